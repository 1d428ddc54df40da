--TEST--
peakcache: exit() inside $compute abandons the fill, and is not mistaken for an error
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
$c = new PeakCache\Cache();
$c->remember('old', fn() => 'stale', 0, 0, 60); // inside its stale-if-error window
register_shutdown_function(function () use ($c) {
    $s = $c->stats();
    echo "fills_abandoned={$s['fills_abandoned']} fills_failed={$s['fills_failed']}\n";
    var_dump($c->remember('k', fn() => 'computed again', 60));
});
$c->remember('old', function () { echo "exiting\n"; exit(0); }, 0, 0, 60);
echo "not reached (nor is the stale-if-error value served: exit is not a failure)\n";
?>
--EXPECT--
exiting
fills_abandoned=1 fills_failed=0
string(14) "computed again"
