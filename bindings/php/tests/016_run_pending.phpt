--TEST--
peakcache: runPendingRefreshes() runs deferred refreshes now (workers that never shut a request down)
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
$c = new PeakCache\Cache();
var_dump(PeakCache\Cache::runPendingRefreshes());
foreach (['a', 'b'] as $k) {
    $c->remember($k, fn() => "$k-1", 60, 300, 0, ['all']);
}
$c->purgeTag('all', true);
foreach (['a', 'b'] as $k) {
    var_dump($c->remember($k, function () use ($k) { echo "refresh $k\n"; return "$k-2"; }, 60, 300, 0, ['all']));
}
echo "before\n";
var_dump(PeakCache\Cache::runPendingRefreshes());
echo "after\n";
var_dump($c->getMultiple(['a', 'b']));
var_dump(PeakCache\Cache::runPendingRefreshes());
// A refresh deferred after a manual run still runs at shutdown.
$c->purge('a', true);
var_dump($c->remember('a', function () { echo "refresh a at shutdown\n"; return 'a-3'; }, 60, 300));
echo "end of script\n";
?>
--EXPECT--
int(0)
string(3) "a-1"
string(3) "b-1"
before
refresh a
refresh b
int(2)
after
array(2) {
  ["a"]=>
  string(3) "a-2"
  ["b"]=>
  string(3) "b-2"
}
int(0)
string(3) "a-2"
end of script
refresh a at shutdown
