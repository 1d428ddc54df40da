/*
 * peakcache: the PHP extension (PeakCache\Cache), a host of include/peakcache.h.
 */

#ifndef PHP_PEAKCACHE_H
#define PHP_PEAKCACHE_H

extern zend_module_entry peakcache_module_entry;
#define phpext_peakcache_ptr &peakcache_module_entry

#define PHP_PEAKCACHE_VERSION "0.2.0"

/* The flags word stored with a value: how its bytes are to be read back. A value stored by
 * another host (flags 0) reads as a string. */
#define PEAKCACHE_PHP_SERIALIZED 0x1u

ZEND_BEGIN_MODULE_GLOBALS(peakcache)
	/* php.ini (PHP_INI_SYSTEM) */
	bool enable;
	bool enable_cli;
	bool shared;
	char *shm_path;          /* peakcache.shared=1: the region file; "" the default; "anonymous" */
	zend_long size;
	zend_long max_object_size;
	zend_long shards;
	zend_long lock_timeout;  /* milliseconds */
	zend_long default_ttl;   /* seconds; 0: as long as the cache keeps anything (49 days) */
	zend_long default_swr;   /* seconds */
	zend_long default_sie;   /* seconds */
	HashTable *allowed_classes; /* peakcache.allowed_classes, lowercase names; NULL: every class */
	/* This request's state, released at request shutdown. */
	HashTable *fills;      /* key => peakcache_fill*: fills this request holds while computing */
	HashTable *deferred;   /* pc_deferred*: stale-value refreshes to run after the response */
	bool shutdown_registered;
ZEND_END_MODULE_GLOBALS(peakcache)

ZEND_EXTERN_MODULE_GLOBALS(peakcache)
#define PEAKCACHE_G(v) ZEND_MODULE_GLOBALS_ACCESSOR(peakcache, v)

#if defined(ZTS) && defined(COMPILE_DL_PEAKCACHE)
ZEND_TSRMLS_CACHE_EXTERN()
#endif

#endif /* PHP_PEAKCACHE_H */
