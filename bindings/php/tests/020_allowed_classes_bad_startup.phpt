--TEST--
peakcache: a peakcache.allowed_classes in php.ini with a name that is not a class name allows no class (a warning says why), never every class
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.allowed_classes="stdClass, not-a-class"
display_startup_errors=1
--FILE--
<?php
$c = new PeakCache\Cache();
$c->set('std', new stdClass());
var_dump(get_class($c->get('std')));
?>
--EXPECTF--
%AWarning: PHP Startup: peakcache.allowed_classes: "not-a-class" is not a class name; no class is allowed in %s
string(22) "__PHP_Incomplete_Class"
