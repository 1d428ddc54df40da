--TEST--
peakcache: peakcache.allowed_classes="" allows no class: stored objects come back as __PHP_Incomplete_Class and none of their methods run
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.allowed_classes=
--FILE--
<?php
// A class whose magic methods would act on their own if a value could make them run.
class Gadget {
    public $cmd = 'echo';
    public function __wakeup(): void { echo "__wakeup ran\n"; }
    public function __destruct() { if ($this->cmd === 'planted') echo "__destruct ran\n"; }
}
var_dump(ini_get('peakcache.allowed_classes'));
$c = new PeakCache\Cache();
$g = new Gadget();
$g->cmd = 'planted';
$c->set('g', $g);
$g->cmd = 'echo';
$c->set('nested', ['a' => 1, 'obj' => $g, 'list' => [2, 3]]);
$c->set('scalar', [1, 'two', 3.5, true, null]);

$back = $c->get('g');
var_dump(get_class($back), $back instanceof Gadget);
$props = (array)$back;
var_dump($props['__PHP_Incomplete_Class_Name'], $props['cmd']);
unset($back); // no __destruct: it is not a Gadget

$nested = $c->get('nested');
var_dump($nested['a'], get_class($nested['obj']), $nested['list']);
var_dump($c->get('scalar') === [1, 'two', 3.5, true, null]);
var_dump(get_class($c->getMultiple(['g'])['g']));

// remember(): a hit is decoded with the same list; the caller that computes gets its own value.
$computed = $c->remember('r', fn() => new ArrayObject([1]), 60);
var_dump(get_class($computed));
var_dump(get_class($c->remember('r', fn() => 'not called', 60)));
echo "done\n";
?>
--EXPECT--
string(0) ""
string(22) "__PHP_Incomplete_Class"
bool(false)
string(6) "Gadget"
string(7) "planted"
int(1)
string(22) "__PHP_Incomplete_Class"
array(2) {
  [0]=>
  int(2)
  [1]=>
  int(3)
}
bool(true)
string(22) "__PHP_Incomplete_Class"
string(11) "ArrayObject"
string(22) "__PHP_Incomplete_Class"
done
