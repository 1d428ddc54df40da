--TEST--
peakcache: statusPage() is the live page every host serves; statusJson() and stats($history) carry the host totals and the per-second history; visitor requests are counted at request end
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.shared=1
peakcache.shm_path=anonymous
peakcache.size=1M
--FILE--
<?php
$page = PeakCache\Cache::statusPage();
var_dump(str_starts_with($page, '<!doctype html>'), str_contains($page, 'format'));
$c = new PeakCache\Cache();
$c->set('a', 'x');
$c->get('a');
$doc = json_decode(PeakCache\Cache::statusJson(60), true);
var_dump($doc['fresh'], $doc['frozen'], array_keys($doc['host']), $doc['history']['seconds']);
var_dump(count($doc['history']['t']) === count($doc['history']['visitor_requests']));
$s = $c->stats(60);
var_dump($s['fresh'], isset($s['history']['t'], $s['host']['visitor_errors']), isset($c->stats()['history']));
try {
    PeakCache\Cache::statusJson(-1);
} catch (PeakCache\Exception $e) {
    echo $e->getMessage(), "\n";
}
// A second request of the same pool (a child sharing the anonymous mapping is not possible
// from the CLI): this request's count reaches the totals at its end, so it is not in them yet.
var_dump($doc['host']['visitor_requests']);
?>
--EXPECT--
bool(true)
bool(true)
int(1)
bool(false)
array(4) {
  [0]=>
  string(16) "visitor_requests"
  [1]=>
  string(14) "visitor_errors"
  [2]=>
  string(15) "origin_requests"
  [3]=>
  string(13) "origin_errors"
}
int(60)
bool(true)
int(1)
bool(true)
bool(false)
PeakCache\Cache::statusJson(): Argument #1 ($history) must be greater than or equal to 0, -1 given
int(0)
