<?php
/*
 * The recording origin of the hostile suite, for fastcgi_pass: the same spec semantics as
 * origin.py (README.md, "The origin"). Every .php path of the test site is a symlink to this
 * script; HOSTILE_DIR (the pool's env) holds specs/<md5 of the path>.json, the per-path
 * counters and log.jsonl, one JSON line per request with what PHP was given.
 */

const HANG_SECONDS = 10;

function hostile_dir(): string
{
    $dir = getenv('HOSTILE_DIR');
    if ($dir === false || $dir === '') {
        http_response_code(500);
        echo "HOSTILE_DIR is not set in the pool's env\n";
        exit;
    }
    return $dir;
}

/* The raw path of REQUEST_URI (absolute-form targets reduced to their path). */
function request_path(string $uri): string
{
    $path = explode('?', $uri, 2)[0];
    if (preg_match('#^[A-Za-z][A-Za-z0-9+.-]*://[^/?\#]*(.*)$#', $path, $m)) {
        $path = $m[1] === '' ? '/' : $m[1];
    }
    return $path;
}

/* HTTP_X_FORWARDED_HOST -> X-Forwarded-Host */
function header_name(string $param): string
{
    return str_replace(' ', '-', ucwords(strtolower(str_replace('_', ' ', $param))));
}

/* The request headers PHP was given, in the order of the params. */
function request_headers(): array
{
    $out = [];
    foreach ($_SERVER as $k => $v) {
        if (strncmp($k, 'HTTP_', 5) === 0) {
            $out[] = [header_name(substr($k, 5)), (string) $v];
        }
    }
    $bodyParams = ['CONTENT_LENGTH' => 'Content-Length', 'CONTENT_TYPE' => 'Content-Type'];
    foreach ($bodyParams as $k => $name) {
        if (isset($_SERVER[$k]) && $_SERVER[$k] !== '') {
            $out[] = [$name, (string) $_SERVER[$k]];
        }
    }
    return $out;
}

function request_header(array $headers, string $name): ?string
{
    foreach ($headers as [$k, $v]) {
        if (strcasecmp($k, $name) === 0) {
            return $v;
        }
    }
    return null;
}

/* Counts the request for its path (under a lock), logs it, and returns its number. */
function record(string $dir, string $path, array $line): int
{
    $counter = fopen("$dir/counts/" . md5($path), 'c+');
    flock($counter, LOCK_EX);
    $n = (int) stream_get_contents($counter) + 1;
    ftruncate($counter, 0);
    rewind($counter);
    fwrite($counter, (string) $n);
    fflush($counter);

    $line['n'] = $n;
    $log = fopen("$dir/log.jsonl", 'a');
    flock($log, LOCK_EX);
    fwrite($log, json_encode($line, JSON_UNESCAPED_SLASHES) . "\n");
    fflush($log);
    flock($log, LOCK_UN);
    fclose($log);

    flock($counter, LOCK_UN);
    fclose($counter);
    return $n;
}

function expand(string $template, array $req, int $n): string
{
    $fill = function (array $m) use ($req, $n): string {
        switch ($m[1]) {
            case 'n':
                return (string) $n;
            case 'path':
                return $req['path'];
            case 'method':
                return $req['method'];
            case 'query':
                return $req['query'];
        }
        return request_header($req['headers'], substr($m[1], 2)) ?? '-';
    };
    return preg_replace_callback('/\{(n|path|method|query|h:[A-Za-z0-9-]+)\}/', $fill, $template);
}

function etag_matches(string $ifNoneMatch, string $etag): bool
{
    if (trim($ifNoneMatch) === '*') {
        return true;
    }
    $bare = str_starts_with($etag, 'W/') ? substr($etag, 2) : $etag;
    preg_match_all('#(?:W/)?"[^"]*"#', $ifNoneMatch, $m);
    foreach ($m[0] as $tag) {
        if ((str_starts_with($tag, 'W/') ? substr($tag, 2) : $tag) === $bare) {
            return true;
        }
    }
    return false;
}

function not_modified(array $spec, array $req, ?string $etag): bool
{
    $inm = request_header($req['headers'], 'If-None-Match');
    if ($inm !== null) {
        return $etag !== null && etag_matches($inm, $etag);
    }
    $ims = request_header($req['headers'], 'If-Modified-Since');
    if ($ims !== null && !empty($spec['last_modified'])) {
        $since = strtotime($ims);
        $modified = strtotime($spec['last_modified']);
        return $since !== false && $modified !== false && $modified <= $since;
    }
    return false;
}

/* [first, last] of a single bytes=a-b range inside $size, or null. */
function byte_range(?string $value, int $size): ?array
{
    if ($value === null || !preg_match('/^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/', $value, $m)
        || ($m[1] === '' && $m[2] === '')) {
        return null;
    }
    if ($m[1] === '') {
        [$first, $last] = [max(0, $size - (int) $m[2]), $size - 1];
    } else {
        $first = (int) $m[1];
        $last = $m[2] === '' ? $size - 1 : min($size - 1, (int) $m[2]);
    }
    return $first <= $last && $last < $size ? [$first, $last] : null;
}

function send(int $status, array $headers, string $body, string $method): void
{
    http_response_code($status);
    foreach ($headers as [$k, $v]) {
        header("$k: $v", false);
    }
    if ($method !== 'HEAD' && $status !== 204 && $status !== 304) {
        echo $body;
    }
}

/* Ends this FPM worker without a byte of answer: nginx sees the upstream close. */
function drop(): void
{
    posix_kill(posix_getpid(), 9);
}

$dir = hostile_dir();
$t = microtime(true);
$uri = $_SERVER['REQUEST_URI'] ?? '';
$body = (string) file_get_contents('php://input');
$declared = isset($_SERVER['CONTENT_LENGTH']) && $_SERVER['CONTENT_LENGTH'] !== ''
    ? (int) $_SERVER['CONTENT_LENGTH'] : null;
$req = [
    't' => $t,
    'method' => $_SERVER['REQUEST_METHOD'] ?? '',
    'target' => $uri,
    'path' => request_path($uri),
    'query' => $_SERVER['QUERY_STRING'] ?? '',
    'version' => $_SERVER['SERVER_PROTOCOL'] ?? '',
    'headers' => request_headers(),
    'declared_length' => $declared,
    'chunked' => false,
    'body_len' => strlen($body),
    'body_b64' => base64_encode(substr($body, 0, 4096)),
    'complete' => $declared === null || $declared === strlen($body),
    'body_wait' => 0,
];
$n = record($dir, $req['path'], $req);

$specText = @file_get_contents("$dir/specs/" . md5($req['path']) . '.json');
$spec = $specText === false ? null : json_decode($specText, true);
if (!is_array($spec)) {
    send(404, [['Content-Type', 'text/plain']], "no spec for {$req['path']}\n", $req['method']);
    exit;
}
if (!empty($spec['delay'])) {
    usleep((int) ($spec['delay'] * 1e6));
}
switch ($spec['fail'] ?? null) {
    case 'drop':
        drop();
        break;
    case 'hang':
        sleep(HANG_SECONDS);
        drop();
        break;
    case '503':
        send(503, [['Content-Type', 'text/plain'], ['Cache-Control', 'no-store']], "origin down\n",
            $req['method']);
        exit;
}
if ($req['method'] !== 'GET' && $req['method'] !== 'HEAD') {
    send((int) ($spec['unsafe_status'] ?? 200), [['Content-Type', 'text/plain']],
        expand("done {method} {path}\n", $req, $n), $req['method']);
    exit;
}
$headers = [['Content-Type', 'text/plain']];
foreach ($spec['headers'] ?? [] as [$k, $v]) {
    $headers[] = [$k, expand($v, $req, $n)];
}
$etag = empty($spec['etag']) ? null : expand($spec['etag'], $req, $n);
if ($etag !== null) {
    $headers[] = ['ETag', $etag];
}
if (!empty($spec['last_modified'])) {
    $headers[] = ['Last-Modified', $spec['last_modified']];
}
if (!empty($spec['date'])) {
    $headers[] = ['Date', gmdate('D, d M Y H:i:s') . ' GMT'];
}
if (not_modified($spec, $req, $etag)) {
    send(304, $headers, '', $req['method']);
    exit;
}
$page = expand($spec['body'] ?? "page {path} n={n}\n", $req, $n);
$status = (int) ($spec['status'] ?? 200);
$range = request_header($req['headers'], 'Range');
if (!empty($spec['ranges']) && $status === 200 && $range !== null) {
    $r = byte_range($range, strlen($page));
    if ($r !== null) {
        $headers[] = ['Content-Range', "bytes {$r[0]}-{$r[1]}/" . strlen($page)];
        send(206, $headers, substr($page, $r[0], $r[1] - $r[0] + 1), $req['method']);
        exit;
    }
}
send($status, $headers, $page, $req['method']);
