<?php

/**
 * @generate-class-entries
 */

namespace PeakCache;

/**
 * Raised on misuse (an empty key, a negative ttl, a value over the object limit, a value that
 * cannot be serialized) and when the library reports an error. Never a crash.
 */
class Exception extends \RuntimeException
{
}

/**
 * The process's cache pool, configured in php.ini (peakcache.size, ...). Every instance is a
 * view of the same pool. Keys are byte strings; strings are stored as they are, other values
 * with PHP's serializer. ttl, swr and sie are in seconds.
 *
 * @strict-properties
 * @not-serializable
 */
final class Cache
{
    public function __construct() {}

    /** The value of $key if it is stored and fresh; $default otherwise (PSR-16 get). */
    public function get(string $key, mixed $default = null): mixed {}

    /**
     * Stores $value under $key for $ttl seconds (null: peakcache.default_ttl; 0: deletes it, as
     * PSR-16 says), replacing what was there. $tags are for purgeTag(). False when the key is
     * passing through (its fill outlived the lock timeout) or peakcache is disabled.
     */
    public function set(string $key, mixed $value, ?int $ttl = null, array $tags = []): bool {}

    /** Removes $key (true even if it was not stored, as PSR-16 says). */
    public function delete(string $key): bool {}

    /** Whether $key is stored and fresh. */
    public function has(string $key): bool {}

    /** Removes every entry of the pool. */
    public function clear(): bool {}

    /** The values of $keys (fresh ones; $default for the others), keyed by key (PSR-16). */
    public function getMultiple(iterable $keys, mixed $default = null): array {}

    /** set() for each key => value; true when every one was stored. */
    public function setMultiple(iterable $values, ?int $ttl = null, array $tags = []): bool {}

    /** delete() for each key. */
    public function deleteMultiple(iterable $keys): bool {}

    /**
     * The value of $key, computed by $compute() once when missing while concurrent callers of
     * that key wait for it. Fresh for $ttl seconds, then served stale for $swr seconds while one
     * caller refreshes it after the response (null: peakcache.default_swr); when $compute throws,
     * a value inside its stale-if-error window ($sie seconds past its ttl; null:
     * peakcache.default_sie) is returned instead of the exception.
     */
    public function remember(
        string $key,
        callable $compute,
        int $ttl,
        ?int $swr = null,
        ?int $sie = null,
        array $tags = []
    ): mixed {}

    /** Purges every entry tagged $tag: gone (hard) or, $soft, stale from now on. */
    public function purgeTag(string $tag, bool $soft = false): void {}

    /** Purges $key: gone (hard) or, $soft, stale from now on. Whether it was stored or being filled. */
    public function purge(string $key, bool $soft = false): bool {}

    /** While frozen, whatever is stored is served as fresh and only misses are computed. */
    public function freeze(bool $on = true): void {}

    public function isFrozen(): bool {}

    /**
     * Every counter of the pool (the C struct peakcache_stats), plus "enabled"; with $history
     * seconds (at most 1023), also "frozen", "host" (the pool's visitor and origin totals),
     * "now" and "history": the per-second arrays of statusJson().
     */
    public function stats(int $history = 0): array {}

    /**
     * The status document every peakcache host serves, as JSON: the counters, "frozen", "host",
     * "now" and the last $history seconds (at most 1023) of per-second history. Answer the live
     * page's polls (its URL with ?format=json&history=N) with it.
     */
    public static function statusJson(int $history = 0): string {}

    /**
     * The live status page: one self-contained HTML document that polls its own URL with
     * ?format=json&history=300 every second (answer those with statusJson()).
     */
    public static function statusPage(): string {}

    /**
     * Writes every servable entry of the shared pool to $path (a temporary file beside it,
     * synced, renamed over it). Returns the number of entries written. Needs peakcache.shared=1.
     */
    public function snapshot(string $path): int {}

    /**
     * Loads a snapshot written by snapshot() (by any process of any host): entries keep their
     * ages; the ones past every window are skipped. With $rollback, the pool is frozen and
     * emptied first, so the snapshot's copies replace what is stored (a rollback in one call;
     * freeze(false) ends it). Returns the number of entries restored. Needs peakcache.shared=1.
     */
    public function restore(string $path, bool $rollback = false): int {}

    /**
     * Runs now the stale-value refreshes remember() deferred (normally run at request shutdown,
     * after the response is finished where the SAPI can: fastcgi_finish_request under FPM). For
     * long-running workers that never shut a request down. With $finishResponse, first ends the
     * response where the SAPI can. Returns how many refreshes ran.
     */
    public static function runPendingRefreshes(bool $finishResponse = false): int {}

    /** Whether the pool exists in this process (peakcache.enable, peakcache.enable_cli). */
    public static function isEnabled(): bool {}

    /**
     * Where this process's pool lives: the shared memory region's file, or "anonymous" for an
     * anonymous mapping; null when the pool is this process's own (peakcache.shared=0, or the
     * region was refused: the log says why) or there is none.
     */
    public static function region(): ?string {}
}
