--TEST--
peakcache: remember computes once on a miss, returns hits at once, keeps tags
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
$c = new PeakCache\Cache();
$runs = 0;
$compute = function () use (&$runs) { $runs++; return ['page' => 'spring', 'run' => $runs]; };
var_dump($c->remember('page', $compute, 60, 10, 30, ['campaign:spring']));
var_dump($c->remember('page', $compute, 60, 10, 30, ['campaign:spring']));
var_dump($runs);
// Strings as they are, with the same key space as get/set.
var_dump($c->remember('s', fn() => 'plain', 60), $c->get('s'));
// A callable string and an array callable.
var_dump($c->remember('len', 'phpversion', 60) === phpversion());
class Origin { public function fetch() { return 'from method'; } }
var_dump($c->remember('m', [new Origin(), 'fetch'], 60));
// The tag purges it: computed again.
$c->purgeTag('campaign:spring');
var_dump($c->remember('page', $compute, 60)['run']);
// A remember() inside $compute for another key is fine.
var_dump($c->remember('outer', fn() => 'outer+' . $c->remember('inner', fn() => 'inner', 60), 60));
// null is a value like any other.
var_dump($c->remember('null', fn() => null, 60), $c->has('null'));
$s = $c->stats();
var_dump($s['fills_committed'] >= 7, $s['fresh'] >= 1);
?>
--EXPECT--
array(2) {
  ["page"]=>
  string(6) "spring"
  ["run"]=>
  int(1)
}
array(2) {
  ["page"]=>
  string(6) "spring"
  ["run"]=>
  int(1)
}
int(1)
string(5) "plain"
string(5) "plain"
bool(true)
string(11) "from method"
int(2)
string(11) "outer+inner"
NULL
bool(true)
bool(true)
bool(true)
