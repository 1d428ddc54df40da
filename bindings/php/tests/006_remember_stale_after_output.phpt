--TEST--
peakcache: a stale value is returned at once and refreshed once, at request shutdown (CLI), after the script's output
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
$c = new PeakCache\Cache();
register_shutdown_function(function () { echo "shutdown function registered before the stale hit\n"; });
$refresh = function () use ($c) {
    echo "refresh runs (after the script's output)\n";
    // A shutdown function registered now runs after this refresh: it sees the new value.
    register_shutdown_function(function () use ($c) {
        echo "after the refresh: ", $c->get('page'), "\n";
        $s = $c->stats();
        echo "refreshes started {$s['refreshes_started']}, committed {$s['refreshes_committed']}\n";
    });
    return 'v2';
};
var_dump($c->remember('page', fn() => 'v1', 60, 300));
$c->purge('page', true); // soft: stale from now on, served for 300 s while one caller refreshes
var_dump($c->remember('page', $refresh, 60, 300)); // stale: v1 at once, refresh deferred
var_dump($c->remember('page', $refresh, 60, 300)); // stale again: someone refreshes already
register_shutdown_function(function () { echo "shutdown function registered after the stale hit\n"; });
echo "end of script\n";
?>
--EXPECT--
string(2) "v1"
string(2) "v1"
string(2) "v1"
end of script
shutdown function registered before the stale hit
refresh runs (after the script's output)
shutdown function registered after the stale hit
after the refresh: v2
refreshes started 1, committed 1
