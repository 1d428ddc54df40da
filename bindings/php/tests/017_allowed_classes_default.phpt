--TEST--
peakcache: peakcache.allowed_classes defaults to "*": objects come back as the class they were stored as, as from APCu
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
class Point { public function __construct(public int $x = 0) {} public function __wakeup(): void { echo "wakeup\n"; } }
var_dump(ini_get('peakcache.allowed_classes'));
$c = new PeakCache\Cache();
$c->set('p', new Point(3));
$c->set('list', [new Point(4), new ArrayObject([5])]);
var_dump($c->get('p'));
$list = $c->get('list');
var_dump($list[0]->x, get_class($list[1]), $list[1][0]);
?>
--EXPECT--
string(1) "*"
wakeup
object(Point)#3 (1) {
  ["x"]=>
  int(3)
}
wakeup
int(4)
string(11) "ArrayObject"
int(5)
