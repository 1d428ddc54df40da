--TEST--
peakcache: peakcache.allowed_classes as a list: unserialize()'s allowed_classes (names without case, a leading backslash ignored); ini_set() of a bad list fails and changes nothing
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.allowed_classes=" point , \App\Dto\Money,"
--FILE--
<?php
namespace App\Dto { class Money { public $cents = 100; } class Other { } }
namespace {
class Point { public $x = 1; }
$c = new PeakCache\Cache();
$c->set('point', new Point());
$c->set('money', new App\Dto\Money());
$c->set('other', new App\Dto\Other());
$c->set('std', new stdClass());
$show = function () use ($c) {
    foreach (['point', 'money', 'other', 'std'] as $k) echo "$k: ", get_class($c->get($k)), "\n";
};
$show();

echo "-- ini_set(\"stdClass\")\n";
var_dump(ini_set('peakcache.allowed_classes', 'stdClass'));
$show();

echo "-- ini_set() of names that are not class names\n";
foreach (['Point, 9lives', 'App\\\\Dto', 'App\\', 'a-b', '*, Point'] as $bad) {
    var_dump(ini_set('peakcache.allowed_classes', $bad));
}
var_dump(ini_get('peakcache.allowed_classes'));
$show();

echo "-- ini_set(\"*\")\n";
ini_set('peakcache.allowed_classes', '*');
$show();
echo "-- ini_restore()\n";
ini_restore('peakcache.allowed_classes');
var_dump(ini_get('peakcache.allowed_classes'));
$show();
}
?>
--EXPECTF--
point: Point
money: App\Dto\Money
other: __PHP_Incomplete_Class
std: __PHP_Incomplete_Class
-- ini_set("stdClass")
string(24) " point , \App\Dto\Money,"
point: __PHP_Incomplete_Class
money: __PHP_Incomplete_Class
other: __PHP_Incomplete_Class
std: stdClass
-- ini_set() of names that are not class names

Warning: ini_set(): peakcache.allowed_classes: "9lives" is not a class name; the setting is unchanged in %s on line %d
bool(false)

Warning: ini_set(): peakcache.allowed_classes: "App\\Dto" is not a class name; the setting is unchanged in %s on line %d
bool(false)

Warning: ini_set(): peakcache.allowed_classes: "App\" is not a class name; the setting is unchanged in %s on line %d
bool(false)

Warning: ini_set(): peakcache.allowed_classes: "a-b" is not a class name; the setting is unchanged in %s on line %d
bool(false)

Warning: ini_set(): peakcache.allowed_classes: "*" is not a class name; the setting is unchanged in %s on line %d
bool(false)
string(8) "stdClass"
point: __PHP_Incomplete_Class
money: __PHP_Incomplete_Class
other: __PHP_Incomplete_Class
std: stdClass
-- ini_set("*")
point: Point
money: App\Dto\Money
other: App\Dto\Other
std: stdClass
-- ini_restore()
string(24) " point , \App\Dto\Money,"
point: Point
money: App\Dto\Money
other: __PHP_Incomplete_Class
std: __PHP_Incomplete_Class
