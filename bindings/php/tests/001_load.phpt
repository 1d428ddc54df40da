--TEST--
peakcache: loaded, classes and ini settings
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.size=32M
peakcache.default_swr=5
--FILE--
<?php
var_dump(extension_loaded('peakcache'));
var_dump(is_subclass_of('PeakCache\Exception', 'RuntimeException'));
$r = new ReflectionClass('PeakCache\Cache');
var_dump($r->isFinal());
foreach (['get', 'set', 'delete', 'has', 'clear', 'getMultiple', 'setMultiple', 'deleteMultiple',
          'remember', 'purgeTag', 'purge', 'freeze', 'isFrozen', 'stats', 'runPendingRefreshes',
          'isEnabled', 'region'] as $m) {
    if (!$r->hasMethod($m)) echo "missing $m\n";
}
echo $r->getMethod('remember'), "\n";
foreach (['peakcache.enable', 'peakcache.enable_cli', 'peakcache.shared', 'peakcache.size',
          'peakcache.max_object_size', 'peakcache.shards', 'peakcache.lock_timeout',
          'peakcache.default_ttl', 'peakcache.default_swr', 'peakcache.default_sie',
          'peakcache.allowed_classes'] as $ini) {
    echo $ini, '=', ini_get($ini), "\n";
}
var_dump(PeakCache\Cache::isEnabled());
$s = (new PeakCache\Cache())->stats();
var_dump($s['capacity'] === 32 * 1024 * 1024);
ob_start();
(new ReflectionExtension('peakcache'))->info();
$info = ob_get_clean();
var_dump(str_contains($info, 'peakcache support => enabled'));
var_dump(str_contains($info, 'peakcache.lock_timeout => 5000'));
try {
    serialize(new PeakCache\Cache());
} catch (Exception $e) {
    echo get_class($e), ": ", $e->getMessage(), "\n";
}
?>
--EXPECTF--
bool(true)
bool(true)
bool(true)
Method [ <internal:peakcache> public method remember ] {

  - Parameters [6] {
    Parameter #0 [ <required> string $key ]
    Parameter #1 [ <required> callable $compute ]
    Parameter #2 [ <required> int $ttl ]
    Parameter #3 [ <optional> ?int $swr = null ]
    Parameter #4 [ <optional> ?int $sie = null ]
    Parameter #5 [ <optional> array $tags = [] ]
  }
  - Return [ mixed ]
}

peakcache.enable=1
peakcache.enable_cli=1
peakcache.shared=0
peakcache.size=32M
peakcache.max_object_size=0
peakcache.shards=0
peakcache.lock_timeout=5000
peakcache.default_ttl=0
peakcache.default_swr=5
peakcache.default_sie=0
peakcache.allowed_classes=*
bool(true)
bool(true)
bool(true)
bool(true)
Exception: Serialization of 'PeakCache\Cache' is not allowed
