--TEST--
peakcache: a region file anyone may write (planted before the first request) is refused and left alone; the process uses a cache of its own
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.size=1M
error_log={PWD}/023_region_planted_refused.log
--FILE--
<?php
// Planted by "another user": world-writable, with bytes of its own.
$path = __DIR__ . '/023_region_planted_refused.shm';
file_put_contents($path, 'planted');
chmod($path, 0666);
$code = 'var_export([PeakCache\Cache::isEnabled(), PeakCache\Cache::region()]); $c = new PeakCache\Cache();'
    . 'var_export([$c->set("k", "v"), $c->get("k")]);';
$cmd = [PHP_BINARY, '-n', '-d', 'extension_dir=' . ini_get('extension_dir'), '-d', 'extension=peakcache',
    '-d', 'peakcache.enable_cli=1', '-d', 'peakcache.size=1M', '-d', 'peakcache.shared=1',
    '-d', "peakcache.shm_path=$path", '-d', 'error_log=' . ini_get('error_log'), '-r', $code];
$p = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
echo stream_get_contents($pipes[1]), stream_get_contents($pipes[2]), "\n";
proc_close($p);
clearstatcache();
printf("mode %o, left as planted: %s\n", fileperms($path) & 0777, var_export(file_get_contents($path) === 'planted', true));
echo file_get_contents(ini_get('error_log'));
?>
--CLEAN--
<?php
@unlink(__DIR__ . '/023_region_planted_refused.shm');
@unlink(__DIR__ . '/023_region_planted_refused.log');
?>
--EXPECTF--
array (
  0 => true,
  1 => NULL,
)array (
  0 => true,
  1 => 'v',
)
mode 666, left as planted: true
[%s] peakcache: the shared memory region %s/023_region_planted_refused.shm cannot be used (%s); this process uses a cache of its own instead
