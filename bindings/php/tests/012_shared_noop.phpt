--TEST--
peakcache: peakcache.shared=1 puts the pool in a shared memory region that another process attaches to
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.shared=1
peakcache.shm_path=/tmp/peakcache-phpt-012.shm
peakcache.size=4M
display_startup_errors=1
--FILE--
<?php
$path = ini_get('peakcache.shm_path');
var_dump(ini_get('peakcache.shared'), PeakCache\Cache::isEnabled(), file_exists($path));
var_dump(PeakCache\Cache::region() === $path);
$c = new PeakCache\Cache();
$c->clear();
var_dump($c->remember('k', fn() => 'v', 60));
var_dump($c->set('arr', [1, 2], 60), $c->get('arr'), $c->has('arr'), $c->get('nope', 'def'));

// Another process opening the same region: it sees the value and computes nothing; what it
// stores, this process sees.
$code = '$c = new PeakCache\Cache(); echo $c->remember("k", fn() => "computed again", 60), " ";'
    . 'var_dump($c->get("arr")); $c->set("from-child", "hello", 60);';
$cmd = [PHP_BINARY, '-n', '-d', 'extension_dir=' . ini_get('extension_dir'),
    '-d', 'extension=peakcache', '-d', 'peakcache.enable_cli=1', '-d', 'peakcache.shared=1',
    '-d', "peakcache.shm_path=$path", '-d', 'peakcache.size=4M', '-r', $code];
$p = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
$out = stream_get_contents($pipes[1]);
$err = stream_get_contents($pipes[2]);
proc_close($p);
echo $out, $err;
var_dump($c->get('from-child'));
?>
--CLEAN--
<?php @unlink('/tmp/peakcache-phpt-012.shm'); ?>
--EXPECT--
string(1) "1"
bool(true)
bool(true)
bool(true)
string(1) "v"
bool(true)
array(2) {
  [0]=>
  int(1)
  [1]=>
  int(2)
}
bool(true)
string(3) "def"
v array(2) {
  [0]=>
  int(1)
  [1]=>
  int(2)
}
string(5) "hello"
