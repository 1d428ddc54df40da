--TEST--
peakcache: getMultiple, setMultiple, deleteMultiple with arrays and Traversables
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
$c = new PeakCache\Cache();
var_dump($c->setMultiple(['a' => 1, 'b' => 'two', 7 => [7]]));
var_dump($c->getMultiple(['a', 'b', 'c', '7'], 'none'));
function values() { yield 'g1' => 'one'; yield 'g2' => 'two'; }
var_dump($c->setMultiple(values(), 60, ['gen']));
function keys() { yield 'g1'; yield 'g2'; yield 'g3'; }
var_dump($c->getMultiple(keys()));
var_dump($c->getMultiple(new ArrayIterator(['a'])));
var_dump($c->deleteMultiple(['a', 'g1']));
var_dump($c->getMultiple(['a', 'g1', 'g2']));
$c->purgeTag('gen');
var_dump($c->get('g2'));
var_dump($c->getMultiple([]));
// ttl 0 deletes every key (PSR-16).
var_dump($c->setMultiple(['b' => 'x'], 0), $c->has('b'));
?>
--EXPECT--
bool(true)
array(4) {
  ["a"]=>
  int(1)
  ["b"]=>
  string(3) "two"
  ["c"]=>
  string(4) "none"
  [7]=>
  array(1) {
    [0]=>
    int(7)
  }
}
bool(true)
array(3) {
  ["g1"]=>
  string(3) "one"
  ["g2"]=>
  string(3) "two"
  ["g3"]=>
  NULL
}
array(1) {
  ["a"]=>
  int(1)
}
bool(true)
array(3) {
  ["a"]=>
  NULL
  ["g1"]=>
  NULL
  ["g2"]=>
  string(3) "two"
}
NULL
array(0) {
}
bool(true)
bool(false)
