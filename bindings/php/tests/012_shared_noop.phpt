--TEST--
peakcache: peakcache.shared=1 is accepted, warns that it has no effect yet, and the process pool works
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.shared=1
display_startup_errors=1
--FILE--
<?php
var_dump(ini_get('peakcache.shared'), PeakCache\Cache::isEnabled());
$c = new PeakCache\Cache();
var_dump($c->remember('k', fn() => 'v', 60));
?>
--EXPECTF--
%AWarning: PHP Startup: peakcache.shared=1 has no effect yet: the shared-memory tier does not exist, so each process has its own pool in %A
string(1) "1"
bool(true)
string(1) "v"
