--TEST--
peakcache: a shared region that cannot be used is logged with its reason and the process falls back to a cache of its own (no crash, nothing shown to the visitor)
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.shared=1
peakcache.shm_path=/nonexistent-peakcache-dir/region
peakcache.size=1M
error_log={PWD}/022_region_refused.log
display_errors=1
--FILE--
<?php
var_dump(PeakCache\Cache::isEnabled(), PeakCache\Cache::region());
$c = new PeakCache\Cache();
var_dump($c->set('k', 'v'), $c->get('k'), $c->remember('r', fn() => 'computed', 60));
echo file_get_contents(__DIR__ . '/022_region_refused.log');
ob_start();
phpinfo(INFO_MODULES);
$info = ob_get_clean();
preg_match('/^Backend => .*$/m', $info, $m1);
preg_match('/^Shared region refused => .*$/m', $info, $m2);
echo $m1[0], "\n", $m2[0], "\n";
?>
--CLEAN--
<?php @unlink(__DIR__ . '/022_region_refused.log'); ?>
--EXPECTF--
bool(true)
NULL
bool(true)
string(1) "v"
string(8) "computed"
[%s] peakcache: the shared memory region /nonexistent-peakcache-dir/region cannot be used (PEAKCACHE_ERR_IO: %s); this process uses a cache of its own instead
Backend => one pool per process
Shared region refused => /nonexistent-peakcache-dir/region: PEAKCACHE_ERR_IO: %s
