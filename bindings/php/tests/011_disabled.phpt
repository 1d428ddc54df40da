--TEST--
peakcache: disabled in the CLI (peakcache.enable_cli=0, the default): a pass-through, remember() always computes
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=0
--FILE--
<?php
$c = new PeakCache\Cache();
var_dump(PeakCache\Cache::isEnabled());
var_dump($c->set('a', 1), $c->get('a', 'default'), $c->has('a'), $c->delete('a'), $c->clear());
$n = 0;
var_dump($c->remember('r', function () use (&$n) { return ++$n; }, 60));
var_dump($c->remember('r', function () use (&$n) { return ++$n; }, 60));
var_dump($c->getMultiple(['a']), $c->setMultiple(['a' => 1]), $c->deleteMultiple(['a']));
var_dump($c->purge('a'), $c->isFrozen());
$c->purgeTag('t');
$c->freeze();
$s = $c->stats();
var_dump($s['enabled'], $s['lookups']);
// Misuse is still misuse.
try { $c->get(''); } catch (PeakCache\Exception $e) { echo $e->getMessage(), "\n"; }
?>
--EXPECT--
bool(false)
bool(false)
string(7) "default"
bool(false)
bool(false)
bool(false)
int(1)
int(2)
array(1) {
  ["a"]=>
  NULL
}
bool(false)
bool(false)
bool(false)
bool(false)
bool(false)
int(0)
PeakCache\Cache::get(): Argument #1 ($key) must not be empty
