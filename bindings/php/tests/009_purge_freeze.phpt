--TEST--
peakcache: purge and purgeTag (hard, soft), freeze
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
$c = new PeakCache\Cache();
$n = 0;
$compute = function () use (&$n) { return 'v' . ++$n; };
// Hard purge: gone, computed again.
var_dump($c->remember('k', $compute, 60, 60));
var_dump($c->purge('k'), $c->purge('k')); // found, then not (only the first counts)
var_dump($c->remember('k', $compute, 60, 60));
// Soft purge: stale now, still served inside swr while one caller refreshes (deferred).
var_dump($c->purge('k', true));
var_dump($c->remember('k', $compute, 60, 60));      // the stale value, at once
var_dump($c->get('k'));                             // get(): fresh values only
var_dump(PeakCache\Cache::runPendingRefreshes());   // the refresh, now
var_dump($c->get('k'));
// Tags, hard and soft.
$c->remember('a', fn() => 'A', 60, 60, 0, ['t']);
$c->remember('b', fn() => 'B', 60, 60, 0, ['t', 'u']);
$c->purgeTag('u', true);
var_dump($c->get('a'), $c->remember('b', fn() => 'B2', 60, 60, 0, ['t', 'u']), $c->get('b'));
$c->purgeTag('t');
// 'b' is purged while this request holds its refresh: the lookup finds the key being filled by
// that refresh, so it runs now (B2) instead of waiting for this very request's shutdown.
$t = microtime(true);
var_dump($c->get('a'), $c->remember('b', fn() => 'B3', 60, 60, 0, ['t']));
var_dump(microtime(true) - $t < 1.0);
var_dump(PeakCache\Cache::runPendingRefreshes());
// Freeze: whatever is stored is served as fresh; misses still compute.
$c->remember('z', fn() => 'Z', 60, 60);
$c->purge('z', true);
var_dump($c->isFrozen());
$c->freeze();
var_dump($c->isFrozen(), $c->get('z'), $c->remember('new', fn() => 'computed while frozen', 60));
$c->freeze(false);
var_dump($c->isFrozen(), $c->get('z'));
$s = $c->stats();
echo "purges={$s['purges']} tag_purges={$s['tag_purges']}\n";
?>
--EXPECT--
string(2) "v1"
bool(true)
bool(false)
string(2) "v2"
bool(true)
string(2) "v2"
NULL
int(1)
string(2) "v3"
string(1) "A"
string(1) "B"
NULL
NULL
string(2) "B2"
bool(true)
int(0)
bool(false)
bool(true)
string(1) "Z"
string(21) "computed while frozen"
bool(false)
NULL
purges=3 tag_purges=2
