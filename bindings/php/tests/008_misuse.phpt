--TEST--
peakcache: misuse raises PeakCache\Exception with a clear message, never a crash
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.max_object_size=4096
--FILE--
<?php
$c = new PeakCache\Cache();
function attempt(string $what, callable $f) {
    try {
        $r = $f();
        echo "$what: no exception, returned ", var_export($r, true), "\n";
    } catch (Throwable $e) {
        echo "$what: ", get_class($e), ': ', $e->getMessage(), "\n";
    }
}
attempt('get empty key', fn() => $c->get(''));
attempt('set empty key', fn() => $c->set('', 1));
attempt('delete empty key', fn() => $c->delete(''));
attempt('has empty key', fn() => $c->has(''));
attempt('purge empty key', fn() => $c->purge(''));
attempt('purgeTag empty tag', fn() => $c->purgeTag(''));
attempt('remember empty key', fn() => $c->remember('', fn() => 1, 60));
attempt('getMultiple empty key', fn() => $c->getMultiple(['a', '']));
attempt('getMultiple non-string key', fn() => $c->getMultiple([1.5]));
attempt('deleteMultiple non-string key', fn() => $c->deleteMultiple([[]]));
attempt('set negative ttl', fn() => $c->set('k', 1, -1));
attempt('setMultiple negative ttl', fn() => $c->setMultiple(['k' => 1], -5));
attempt('remember negative ttl', fn() => $c->remember('k', fn() => 1, -1));
attempt('remember negative swr', fn() => $c->remember('k', fn() => 1, 1, -2));
attempt('remember negative sie', fn() => $c->remember('k', fn() => 1, 1, 0, -3));
attempt('remember non-string tag', fn() => $c->remember('k', fn() => 1, 1, 0, 0, [42]));
attempt('set empty tag', fn() => $c->set('k', 1, 60, ['']));
attempt('remember not callable', fn() => $c->remember('k', 'no_such_function', 60));
attempt('set too large', fn() => $c->set('big', str_repeat('x', 8192)));
attempt('remember too large', fn() => $c->remember('big', fn() => str_repeat('x', 8192), 60));
attempt('set closure', fn() => $c->set('f', fn() => 1));
attempt('set anonymous class', fn() => $c->set('o', new class {}));
attempt('set array holding a closure', fn() => $c->set('a', [1, [fn() => 2]]));
attempt('remember returning a closure', fn() => $c->remember('rc', fn() => fn() => 1, 60));
attempt('nested remember of the same key', fn() => $c->remember('same', fn() => $c->remember('same', fn() => 1, 60), 60));
attempt('set inside remember of the same key', fn() => $c->remember('same2', fn() => $c->set('same2', 1), 60));
attempt('getMultiple not iterable', fn() => $c->getMultiple('abc'));
// The previous exception is kept.
try { $c->set('f', fn() => 1); } catch (PeakCache\Exception $e) { echo get_class($e->getPrevious()), "\n"; }
// None of it was stored, and the keys that failed are not held.
foreach (['big', 'f', 'o', 'a', 'rc', 'same', 'same2'] as $k) {
    if ($c->has($k)) echo "$k stored\n";
}
var_dump($c->remember('same', fn() => 'fine now', 60), $c->remember('rc', fn() => 'fine too', 60));
$s = $c->stats();
echo "lookups add up: ", var_export($s['lookups'] === $s['fresh'] + $s['stale'] + $s['stale_if_error'] + $s['miss'] + $s['wait'] + $s['pass'], true), "\n";
?>
--EXPECTF--
get empty key: PeakCache\Exception: PeakCache\Cache::get(): Argument #1 ($key) must not be empty
set empty key: PeakCache\Exception: PeakCache\Cache::set(): Argument #1 ($key) must not be empty
delete empty key: PeakCache\Exception: PeakCache\Cache::delete(): Argument #1 ($key) must not be empty
has empty key: PeakCache\Exception: PeakCache\Cache::has(): Argument #1 ($key) must not be empty
purge empty key: PeakCache\Exception: PeakCache\Cache::purge(): Argument #1 ($key) must not be empty
purgeTag empty tag: PeakCache\Exception: PeakCache\Cache::purgeTag(): Argument #1 ($tag) must not be empty
remember empty key: PeakCache\Exception: PeakCache\Cache::remember(): Argument #1 ($key) must not be empty
getMultiple empty key: PeakCache\Exception: PeakCache\Cache::getMultiple(): keys must not be empty
getMultiple non-string key: PeakCache\Exception: PeakCache\Cache::getMultiple(): keys must be strings, float given
deleteMultiple non-string key: PeakCache\Exception: PeakCache\Cache::deleteMultiple(): keys must be strings, array given
set negative ttl: PeakCache\Exception: PeakCache\Cache::set(): Argument #3 ($ttl) must be greater than or equal to 0, -1 given
setMultiple negative ttl: PeakCache\Exception: PeakCache\Cache::setMultiple(): Argument #2 ($ttl) must be greater than or equal to 0, -5 given
remember negative ttl: PeakCache\Exception: PeakCache\Cache::remember(): Argument #3 ($ttl) must be greater than or equal to 0, -1 given
remember negative swr: PeakCache\Exception: PeakCache\Cache::remember(): Argument #4 ($swr) must be greater than or equal to 0, -2 given
remember negative sie: PeakCache\Exception: PeakCache\Cache::remember(): Argument #5 ($sie) must be greater than or equal to 0, -3 given
remember non-string tag: PeakCache\Exception: PeakCache\Cache::remember(): Argument #6 ($tags) must contain only non-empty strings
set empty tag: PeakCache\Exception: PeakCache\Cache::set(): Argument #4 ($tags) must contain only non-empty strings
remember not callable: TypeError: PeakCache\Cache::remember(): Argument #2 ($compute) must be a valid callback, function "no_such_function" not found or invalid function name
set too large: PeakCache\Exception: The value of key "big" weighs %d bytes, over the object limit of 4096 bytes (peakcache.max_object_size, peakcache.size)
remember too large: PeakCache\Exception: The value of key "big" weighs %d bytes, over the object limit of 4096 bytes (peakcache.max_object_size, peakcache.size)
set closure: PeakCache\Exception: The value of key "f" cannot be serialized
set anonymous class: PeakCache\Exception: The value of key "o" cannot be serialized
set array holding a closure: PeakCache\Exception: The value of key "a" cannot be serialized
remember returning a closure: PeakCache\Exception: The value of key "rc" cannot be serialized
nested remember of the same key: PeakCache\Exception: PeakCache\Cache::remember(): key "same" is being computed by remember() in this request; waiting for it would wait for itself
set inside remember of the same key: PeakCache\Exception: PeakCache\Cache::set(): key "same2" is being computed by remember() in this request; waiting for it would wait for itself
getMultiple not iterable: TypeError: PeakCache\Cache::getMultiple(): Argument #1 ($keys) must be of type Traversable|array, string given
Exception
string(8) "fine now"
string(8) "fine too"
lookups add up: true
