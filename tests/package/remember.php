<?php
// An installed peakcache extension, run as php -d peakcache.enable_cli=1 remember.php VERSION
// [INI]: of the packaged version, loaded through the scanned ini file INI when given (the one
// phpenmod linked), and remember() computes once until a purge. Prints "ok ..." / "FAIL ..."
// lines; exits 1 on a failure.
$version = $argv[1] ?? '';
$ini = $argv[2] ?? null;
$failures = 0;

function check(string $what, bool $ok): void
{
    global $failures;
    echo ($ok ? 'ok   ' : 'FAIL '), $what, "\n";
    $failures += $ok ? 0 : 1;
}

check('peakcache loaded', extension_loaded('peakcache'));
if ($ini !== null) {
    check("loaded through $ini", str_contains((string) php_ini_scanned_files(), $ini));
}
check("extension version is the package's ($version): " . phpversion('peakcache'),
    phpversion('peakcache') === $version);

$cache = new PeakCache\Cache();
$runs = 0;
$compute = function () use (&$runs) {
    $runs++;
    return "page #$runs";
};
$first = $cache->remember('post:1', $compute, 60, tags: ['post:1']);
$second = $cache->remember('post:1', $compute, 60, tags: ['post:1']);
check("remember computes once: $first, $second", $first === 'page #1' && $second === 'page #1'
    && $runs === 1);
$cache->purgeTag('post:1');
$third = $cache->remember('post:1', $compute, 60, tags: ['post:1']);
check("purgeTag makes remember compute again: $third", $third === 'page #2' && $runs === 2);
exit($failures === 0 ? 0 : 1);
