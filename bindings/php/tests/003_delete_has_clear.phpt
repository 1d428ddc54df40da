--TEST--
peakcache: delete, has, clear
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
$c = new PeakCache\Cache();
var_dump($c->has('a'));
$c->set('a', 1);
$c->set('b', 'two');
var_dump($c->has('a'), $c->has('b'));
var_dump($c->delete('a'), $c->has('a'), $c->get('a'));
var_dump($c->delete('never-stored')); // true, as PSR-16 says
var_dump($c->clear(), $c->has('b'), $c->stats()['entries']);
?>
--EXPECT--
bool(false)
bool(true)
bool(true)
bool(true)
bool(false)
NULL
bool(true)
bool(true)
bool(false)
int(0)
