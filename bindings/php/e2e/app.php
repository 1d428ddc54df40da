<?php
// The application behind nginx + PHP-FPM in fpm-nginx.sh and fpm-pools.sh. Every response names
// the worker (pid) that served it; every run of $compute is appended to
// $PEAKCACHE_E2E_DIR/computes.log, one line per run.
$log = getenv('PEAKCACHE_E2E_DIR') . '/computes.log';
$c = new PeakCache\Cache();
header('X-Worker: ' . getmypid());
$op = $_GET['op'] ?? 'remember';
$key = $_GET['key'] ?? 'campaign';
$sleep_ms = (int)($_GET['sleep_ms'] ?? 0);

$compute = function () use ($log, $key, $sleep_ms) {
    usleep($sleep_ms * 1000); // an expensive origin
    file_put_contents($log, "$key " . getmypid() . "\n", FILE_APPEND | LOCK_EX);
    return "value of $key computed by " . getmypid() . " at " . hrtime(true);
};

switch ($op) {
    case 'remember':
        echo $c->remember($key, $compute, 60, 300);
        break;
    case 'purge-soft':
        var_export($c->purge($key, true));
        break;
    case 'get':
        echo var_export($c->get($key), true);
        break;
    case 'set':
        var_export($c->set($key, $_GET['value'] ?? '', 60));
        break;
    case 'region':
        echo var_export(PeakCache\Cache::region(), true);
        break;
    case 'stats':
        echo json_encode($c->stats());
        break;
    default:
        http_response_code(400);
}
