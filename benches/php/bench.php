<?php
// peakcache against APCu in one PHP process (CLI): ns per operation for fetch/store of 100 B and
// 10 KiB strings and arrays, and remember()/apcu_entry() hits. Run by benches/php/run.sh, which
// loads both extensions with apc.enable_cli=1 and peakcache.enable_cli=1.
// Usage: php bench.php [SECONDS_PER_CASE]   Prints a table and, with --json, one JSON line.

$budget = (float)($argv[1] ?? 0.5);
if (!extension_loaded('peakcache') || !extension_loaded('apcu')) {
    fwrite(STDERR, "bench.php: needs the peakcache and apcu extensions\n");
    exit(1);
}
if (!PeakCache\Cache::isEnabled() || !apcu_enabled()) {
    fwrite(STDERR, "bench.php: set peakcache.enable_cli=1 and apc.enable_cli=1\n");
    exit(1);
}
$c = new PeakCache\Cache();
$keys = 1000; // a working set that stays in cache for both
$s100 = str_repeat('a', 100);
$s10k = str_repeat('b', 10240);
$arr = ['id' => 42, 'title' => 'Spring campaign', 'tags' => ['a', 'b', 'c'], 'price' => 9.99];

/** Runs $op($i) in batches until $budget seconds pass; returns ns per op (best of 3 runs). */
function measure(callable $op, float $budget): float {
    $best = INF;
    for ($run = 0; $run < 3; $run++) {
        $n = 0;
        $start = hrtime(true);
        $deadline = $start + (int)($budget / 3 * 1e9);
        do {
            for ($i = 0; $i < 1000; $i++) {
                $op($n + $i);
            }
            $n += 1000;
            $now = hrtime(true);
        } while ($now < $deadline);
        $best = min($best, ($now - $start) / $n);
    }
    return $best;
}

// The loop and closure call cost the same for both sides; measured to report it.
$baseline = measure(function ($i) { return $i; }, $budget);

$cases = [];
foreach (['100 B string' => $s100, '10 KiB string' => $s10k, 'array (serialized)' => $arr] as $name => $v) {
    for ($k = 0; $k < $keys; $k++) {
        $c->set("k$k", $v);
        apcu_store("k$k", $v);
    }
    $cases["fetch $name"] = [
        measure(function ($i) use ($c, $keys) { return $c->get('k' . ($i % $keys)); }, $budget),
        measure(function ($i) use ($keys) { return apcu_fetch('k' . ($i % $keys)); }, $budget),
        '$c->get() vs apcu_fetch()',
    ];
    $cases["store $name"] = [
        measure(function ($i) use ($c, $keys, $v) { return $c->set('k' . ($i % $keys), $v, 3600); }, $budget),
        measure(function ($i) use ($keys, $v) { return apcu_store('k' . ($i % $keys), $v, 3600); }, $budget),
        '$c->set() vs apcu_store()',
    ];
}
for ($k = 0; $k < $keys; $k++) {
    $c->remember("r$k", fn() => $s100, 3600);
    apcu_entry("r$k", fn() => $s100, 3600);
}
$cases['remember hit 100 B string'] = [
    measure(function ($i) use ($c, $keys, $s100) { return $c->remember('r' . ($i % $keys), fn() => $s100, 3600); }, $budget),
    measure(function ($i) use ($keys, $s100) { return apcu_entry('r' . ($i % $keys), fn() => $s100, 3600); }, $budget),
    '$c->remember() vs apcu_entry()',
];

// Sanity: both sides returned what was stored.
if ($c->get('k1') !== $arr || apcu_fetch('k1') !== $arr || $c->remember('r1', fn() => 'x', 60) !== $s100) {
    fwrite(STDERR, "bench.php: a cache returned a wrong value\n");
    exit(1);
}

printf("PHP %s, peakcache extension %s, APCu %s; %d keys; best of 3, %.1f s per case\n",
    PHP_VERSION, phpversion('peakcache'), phpversion('apcu'), $keys, $budget);
printf("loop + closure call overhead, included in both columns: %.0f ns/op\n\n", $baseline);
printf("%-28s %14s %14s %8s   %s\n", 'case', 'peakcache ns', 'APCu ns', 'ratio', 'calls');
printf("%s\n", str_repeat('-', 100));
$json = [];
foreach ($cases as $name => [$pc, $apc, $what]) {
    // ratio > 1: peakcache is faster (APCu time / peakcache time).
    printf("%-28s %14.0f %14.0f %7.2fx   %s\n", $name, $pc, $apc, $apc / $pc, $what);
    $json[$name] = ['peakcache_ns' => round($pc, 1), 'apcu_ns' => round($apc, 1), 'speedup' => round($apc / $pc, 3)];
}
echo "\nratio = APCu ns / peakcache ns (above 1: peakcache is faster)\n";
if (in_array('--json', $argv, true)) {
    echo json_encode(['baseline_ns' => round($baseline, 1), 'cases' => $json]), "\n";
}
