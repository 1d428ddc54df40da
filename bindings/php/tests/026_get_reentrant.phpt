--TEST--
peakcache: get() and getMultiple() of a serialized value whose unserialize() reads the cache again (shared region: both reads copy out of it) returns both values whole
--EXTENSIONS--
peakcache
--INI--
peakcache.enable_cli=1
peakcache.shared=1
peakcache.shm_path=/tmp/peakcache-phpt-026.shm
peakcache.size=4M
error_reporting=E_ALL & ~E_DEPRECATED
--FILE--
<?php
// Serializable::unserialize() runs in the middle of unserializing (unlike __wakeup and
// __unserialize, which run at its end): the inner get() happens while the outer value's bytes
// are still being read.
class Nested implements Serializable {
    public $inner;
    public function serialize(): string { return 'x'; }
    public function unserialize(string $data): void { $this->inner = (new PeakCache\Cache())->get('inner'); }
}
$c = new PeakCache\Cache();
$c->clear();
// The inner value is longer than what of the outer one is read before the nested get(), and
// shorter than all of it.
$c->set('inner', str_repeat('Z', 150), 60);
$c->set('outer', [new Nested(), str_repeat('t', 200), 'end'], 60);
$v = $c->get('outer');
var_dump($v[0]->inner === str_repeat('Z', 150), strlen($v[1]), $v[1] === str_repeat('t', 200), $v[2]);
var_dump(strlen($c->get('inner')), $c->get('missing', 'default'));
// getMultiple() and has() read the same way.
$m = $c->getMultiple(['outer', 'missing'], 'default');
var_dump($m['outer'][0]->inner === str_repeat('Z', 150), $m['outer'][1] === str_repeat('t', 200), $m['missing']);
var_dump($c->has('outer'), $c->has('missing'));
?>
--CLEAN--
<?php @unlink('/tmp/peakcache-phpt-026.shm'); ?>
--EXPECT--
bool(true)
int(200)
bool(true)
string(3) "end"
int(150)
string(7) "default"
bool(true)
bool(true)
string(7) "default"
bool(true)
bool(false)
