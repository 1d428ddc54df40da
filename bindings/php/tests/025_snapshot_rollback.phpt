--TEST--
peakcache: snapshot() and restore(): a rollback in one call brings back the snapshot's copies, frozen; a pool of this process alone refuses with the reason
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.shared=1
peakcache.shm_path=anonymous
peakcache.size=1M
--FILE--
<?php
$path = sys_get_temp_dir() . '/peakcache-025-' . getmypid() . '.snapshot';
$c = new PeakCache\Cache();
for ($i = 0; $i < 10; $i++) $c->set("page$i", "good $i", 600, ['pages']);
var_dump($c->snapshot($path));
// A bad change: every page replaced.
for ($i = 0; $i < 10; $i++) $c->set("page$i", "bad $i", 600, ['pages']);
$c->set('new', 'only after the snapshot', 600);
var_dump($c->restore($path, rollback: true));
var_dump($c->get('page3'), $c->get('new'), $c->isFrozen());
$c->freeze(false);
// Restoring without rollback keeps what is stored and adds what is missing.
$c->delete('page4');
$c->set('page5', 'newer', 600);
var_dump($c->restore($path), $c->get('page4'), $c->get('page5'));
try {
    $c->restore($path . '.missing');
} catch (PeakCache\Exception $e) {
    echo str_contains($e->getMessage(), 'peakcache_cache_restore failed') ? "missing file refused\n" : $e->getMessage();
}
unlink($path);

$cmd = [PHP_BINARY, '-n', '-d', 'extension_dir=' . ini_get('extension_dir'), '-d', 'extension=peakcache',
    '-d', 'peakcache.enable_cli=1', '-d', 'peakcache.size=1M', '-r',
    'try { (new PeakCache\Cache())->snapshot("/tmp/x"); } catch (PeakCache\Exception $e) { echo $e->getMessage(), "\n"; }'];
$p = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
echo stream_get_contents($pipes[1]), stream_get_contents($pipes[2]);
proc_close($p);
?>
--EXPECTF--
int(10)
int(10)
string(6) "good 3"
NULL
bool(true)
int(1)
string(6) "good 4"
string(5) "newer"
missing file refused
peakcache_cache_snapshot failed: %s needs the shared backend (PEAKCACHE_BACKEND_SHARED)%A
