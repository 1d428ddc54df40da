--TEST--
peakcache: get/set round trips (strings as they are, the rest serialized), defaults, replacing
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
class Point { public function __construct(public int $x = 0, public int $y = 0) {} }
$c = new PeakCache\Cache();
var_dump($c->get('missing'));
var_dump($c->get('missing', 'dflt'));
$values = [
    'string' => 'hello',
    'empty' => '',
    'binary' => "a\0b\xff",
    'int' => 42,
    'negative' => -7,
    'float' => 0.1 + 0.2,
    'true' => true,
    'false' => false,
    'null' => null,
    'array' => ['a' => 1, 'nested' => [1, 2, [3]]],
    'object' => new Point(3, 4),
    'numeric-string' => '123',
];
foreach ($values as $k => $v) {
    if ($c->set($k, $v) !== true) echo "set $k failed\n";
}
foreach ($values as $k => $v) {
    $got = $c->get($k, 'DEFAULT');
    if ($got != $v || gettype($got) !== gettype($v)) {
        echo "$k: mismatch: ", var_export($got, true), "\n";
    }
}
var_dump($c->get('object'));
var_dump($c->get('null', 'dflt')); // a stored null is a hit
// A key with a NUL byte is its own key.
$c->set("k\0x", 'with nul');
var_dump($c->get("k\0x"), $c->get('k'));
// set replaces (fresh, and again).
$c->set('string', 'replaced');
$c->set('string', 'replaced twice', 60);
var_dump($c->get('string'));
// A copy, not a reference into the cache.
$a = $c->get('array');
$a['a'] = 2;
var_dump($c->get('array')['a']);
// ttl 0 deletes (PSR-16).
var_dump($c->set('int', 1, 0), $c->has('int'));
// Tags on set.
$c->set('tagged', 'v', 60, ['t1', 't2']);
$c->purgeTag('t2');
var_dump($c->get('tagged'));
?>
--EXPECT--
NULL
string(4) "dflt"
object(Point)#3 (2) {
  ["x"]=>
  int(3)
  ["y"]=>
  int(4)
}
NULL
string(8) "with nul"
NULL
string(14) "replaced twice"
int(1)
bool(true)
bool(false)
NULL
