--TEST--
peakcache: $compute throws: the stale-if-error value is returned, else the exception propagates and nothing is cached
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
--FILE--
<?php
$c = new PeakCache\Cache();
$fail = function () { throw new DomainException('origin down'); };
// ttl 0, swr 0, sie 60: stale at once, past its swr window, inside its stale-if-error window.
var_dump($c->remember('k', fn() => 'last good', 0, 0, 60));
var_dump($c->get('k')); // not fresh
var_dump($c->remember('k', $fail, 0, 0, 60));
// After a failure the key backs off: the stale value is served without computing.
var_dump($c->remember('k', function () { echo "not called\n"; return 'new'; }, 0, 0, 60));
// The failed fill counts its lookup as a miss; the back-off lookup counts as stale-if-error.
$s = $c->stats();
echo "fills_failed={$s['fills_failed']} stale_if_error={$s['stale_if_error']}\n";

// Nothing stale: the exception propagates, nothing is cached, the next call computes.
try {
    $c->remember('n', $fail, 60, 0, 60);
} catch (DomainException $e) {
    echo get_class($e), ': ', $e->getMessage(), "\n";
}
var_dump($c->has('n'));
var_dump($c->remember('n', fn() => 'computed after the failure', 60));
// An Error (not an Exception) too.
try {
    $c->remember('e', fn() => intdiv(1, 0), 60);
} catch (DivisionByZeroError $e) {
    echo get_class($e), "\n";
}
var_dump($c->has('e'));
?>
--EXPECT--
string(9) "last good"
NULL
string(9) "last good"
string(9) "last good"
fills_failed=1 stale_if_error=1
DomainException: origin down
bool(false)
string(26) "computed after the failure"
DivisionByZeroError
bool(false)
