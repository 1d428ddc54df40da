--TEST--
peakcache: a fatal error inside $compute abandons the fill at once (nothing left held, nothing cached)
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
$c = new PeakCache\Cache();
register_shutdown_function(function () use ($c) {
    $s = $c->stats();
    echo "fills_abandoned={$s['fills_abandoned']} fills_committed={$s['fills_committed']}\n";
    // Not held any more by this request: computed again, here.
    var_dump($c->remember('k', fn() => 'after the fatal error', 60));
});
$c->remember('k', function () { trigger_error('fatal inside compute', E_USER_ERROR); }, 60);
echo "not reached\n";
?>
--EXPECTF--
Fatal error: fatal inside compute in %s on line %d
fills_abandoned=1 fills_committed=0
string(21) "after the fatal error"
