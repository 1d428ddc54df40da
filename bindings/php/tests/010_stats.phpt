--TEST--
peakcache: stats() has every counter of the C struct, and the lookup outcomes add up
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.size=1M
--FILE--
<?php
$c = new PeakCache\Cache();
$s = $c->stats();
echo implode(',', array_keys($s)), "\n";
foreach ($s as $k => $v) if ($k !== 'enabled' && $v !== 0 && !in_array($k, ['capacity'])) echo "$k=$v\n";
$c->set('a', 'x');
$c->get('a');
$c->get('b');
$c->remember('r', fn() => 1, 60);
$c->remember('r', fn() => 1, 60);
$s = $c->stats();
var_dump($s['enabled'], $s['entries'], $s['weight'] > 0, $s['capacity']);
var_dump($s['lookups'] === $s['fresh'] + $s['stale'] + $s['stale_if_error'] + $s['miss'] + $s['wait'] + $s['pass']);
// set() is an insert (no lookup); get() a plain read (a miss hands out no fill).
echo "fresh={$s['fresh']} miss={$s['miss']} fills_committed={$s['fills_committed']} fills_abandoned={$s['fills_abandoned']} inserts={$s['inserts']}\n";
// Eviction keeps the pool within its capacity.
for ($i = 0; $i < 2000; $i++) $c->set("fill$i", str_repeat('y', 1000));
$s = $c->stats();
var_dump($s['evictions'] > 0, $s['weight'] <= $s['capacity']);
?>
--EXPECT--
enabled,lookups,fresh,stale,stale_if_error,miss,wait,pass,wait_timeouts,fills_committed,fills_failed,fills_abandoned,fills_uncacheable,refreshes_started,refreshes_committed,refreshes_failed,refreshes_abandoned,refreshes_uncacheable,inserts,rejected_too_large,evictions,expirations,purges,tag_purges,entries,weight,capacity
bool(true)
int(2)
bool(true)
int(1048576)
bool(true)
fresh=2 miss=2 fills_committed=1 fills_abandoned=0 inserts=1
bool(true)
bool(true)
