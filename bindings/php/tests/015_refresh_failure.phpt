--TEST--
peakcache: a deferred refresh that throws is a warning after the response; the stale value stays
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
$c = new PeakCache\Cache();
$c->remember('k', fn() => 'v1', 60, 300);
$c->purge('k', true);
var_dump($c->remember('k', function () { throw new RuntimeException('origin down'); }, 60, 300));
register_shutdown_function(function () use ($c) {
    $s = $c->stats();
    echo "refreshes_failed={$s['refreshes_failed']}\n";
    var_dump($c->remember('k', fn() => 'not computed: the key backs off', 60, 300));
});
echo "end of script\n";
?>
--EXPECTF--
string(2) "v1"
end of script

Warning: PeakCache\Cache::runPendingRefreshes(): Refresh of key "k" failed: RuntimeException: origin down in %s on line %d
refreshes_failed=1
string(2) "v1"
