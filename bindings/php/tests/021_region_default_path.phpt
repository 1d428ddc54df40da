--TEST--
peakcache: with peakcache.shared=1 and no peakcache.shm_path, a process outside PHP-FPM uses /dev/shm/peakcache-php-<euid>, created 0600; region() says where the pool lives
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.shared=1
peakcache.size=1M
--FILE--
<?php
// The effective uid: the second field of Uid: in /proc/self/status (posix may not be loaded).
preg_match('/^Uid:\s+\d+\s+(\d+)/m', file_get_contents('/proc/self/status'), $m);
$euid = (int)$m[1];
$path = "/dev/shm/peakcache-php-$euid";
var_dump(PeakCache\Cache::region() === $path);
clearstatcache();
printf("%o %d\n", fileperms($path) & 0777, fileowner($path) === $euid);
$c = new PeakCache\Cache();
var_dump($c->set('k', 'v'), $c->get('k'));

// The other backends: this process's own memory (null), an anonymous mapping.
$run = function (array $ini) {
    $cmd = [PHP_BINARY, '-n', '-d', 'extension_dir=' . ini_get('extension_dir'),
        '-d', 'extension=peakcache', '-d', 'peakcache.enable_cli=1', '-d', 'peakcache.size=1M'];
    foreach ($ini as $setting) { $cmd[] = '-d'; $cmd[] = $setting; }
    $cmd[] = '-r';
    $cmd[] = 'var_export(PeakCache\Cache::region()); echo "\n";';
    $p = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
    echo stream_get_contents($pipes[1]), stream_get_contents($pipes[2]);
    proc_close($p);
};
$run(['peakcache.shared=0']);
$run(['peakcache.shared=1', 'peakcache.shm_path=anonymous']);
?>
--CLEAN--
<?php
preg_match('/^Uid:\s+\d+\s+(\d+)/m', file_get_contents('/proc/self/status'), $m);
@unlink("/dev/shm/peakcache-php-$m[1]");
?>
--EXPECT--
bool(true)
600 1
bool(true)
string(1) "v"
NULL
'anonymous'
