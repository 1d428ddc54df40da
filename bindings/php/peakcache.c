/*
 * peakcache: the PHP extension. PeakCache\Cache over the process's pool (include/peakcache.h).
 *
 * The pool is one peakcache_cache, created at MINIT from php.ini and shared by every thread of
 * a ZTS build (the handle is thread-safe). By default it lives in the process (under FPM the
 * master creates it before it forks, so each worker has its own copy). With peakcache.shared=1
 * it is a shared memory region, a file under /dev/shm opened at MINIT: in FPM's master, whose
 * workers inherit the mapping when forked (and whose reloads attach to it again, entries kept),
 * and in any other process (CLI, another pool) opening the same path. Every process then sees
 * one cache, and remember() is single flight across all of them.
 *
 * Ownership (the header's rules, and where this file keeps them):
 * - every peakcache_entry is freed in the function that looked it up (values are copied into
 *   PHP strings, as APCu copies them out);
 * - a fill this request holds while $compute runs is kept in PEAKCACHE_G(fills), so a fatal
 *   error (a longjmp past our frame) or exit() leaves it where RSHUTDOWN abandons it;
 * - a refresh ticket waits in PEAKCACHE_G(deferred) until the shutdown function runs it, and is
 *   abandoned at RSHUTDOWN if it never ran.
 */

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "php.h"
#include "php_ini.h"
#include "SAPI.h"
#include "ext/standard/info.h"
#include "ext/standard/php_var.h"
#include "ext/standard/basic_functions.h"
#include "ext/spl/spl_exceptions.h"
#include "ext/spl/spl_iterators.h"
#include "zend_exceptions.h"
#include "zend_interfaces.h"
#include "zend_smart_str.h"
#include "ext/json/php_json.h"

#include <peakcache.h>
#include <ctype.h>
#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include "php_peakcache.h"
#include "peakcache_arginfo.h"

ZEND_DECLARE_MODULE_GLOBALS(peakcache)

static zend_class_entry *peakcache_exception_ce;
static zend_class_entry *peakcache_cache_ce;

/* The process's pool; NULL when disabled (peakcache.enable, peakcache.enable_cli) or when it
 * could not be created (a warning said why). Written only at MINIT/MSHUTDOWN. */
static peakcache_cache *peakcache_pool;
/* Whether the pool is a shared memory region (peakcache.shared=1). */
static bool pc_pool_shared;
/* Region paths we make or report. */
#define PC_PATH_MAX 4096
/* Where the pool lives when shared: its region file, or "anonymous". */
static char pc_region[PC_PATH_MAX];

/* The longest window the library keeps (2^32-1 ms, 49 days). */
#define PC_MAX_WINDOW_MS ((uint64_t)UINT32_MAX)
/* Waiters are released by the pool's lock timeout; this much more is our own bound. */
#define PC_WAIT_SLACK_MS 1000
/* How many times set() retries when another caller replaces the key under it. */
#define PC_SET_ATTEMPTS 4
/* Key bytes quoted in an exception message. */
#define PC_KEY_QUOTE 64

/* A stale value's refresh, run after the response (see pc_run_deferred). */
typedef struct {
	peakcache_refresh *ticket; /* NULL once consumed */
	zend_string *key;
	zval compute;
	zval tags; /* an array */
	uint64_t ttl_ms;
	uint64_t swr_ms;
	uint64_t sie_ms;
} pc_deferred;

/* {{{ peakcache.allowed_classes */
static void pc_classes_free(HashTable *classes)
{
	if (classes) {
		zend_hash_destroy(classes);
		pefree(classes, 1);
	}
}

/* Whether name[0..len) is a class name as serialize() writes one: namespace segments of
 * letters, digits, underscores and bytes >= 0x80, not starting with a digit. */
static bool pc_is_class_name(const char *name, size_t len)
{
	size_t i;
	bool segment_start = true;

	if (len == 0) {
		return false;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '\\') {
			if (segment_start) {
				return false;
			}
			segment_start = true;
		} else if (c == '_' || isalpha(c) || c >= 0x80 || (!segment_start && isdigit(c))) {
			segment_start = false;
		} else {
			return false;
		}
	}
	return !segment_start;
}

/* Parses peakcache.allowed_classes into *classes: NULL for "*" (every class), else a persistent
 * table of lowercase names (empty: no class). On a name that is not one, false with *bad and
 * *bad_len quoting it. */
static bool pc_classes_parse(const zend_string *value, HashTable **classes, const char **bad,
	size_t *bad_len)
{
	const char *p = ZSTR_VAL(value), *end = p + ZSTR_LEN(value);
	HashTable *ht;

	while (p < end && isspace((unsigned char)*p)) {
		p++;
	}
	while (end > p && isspace((unsigned char)end[-1])) {
		end--;
	}
	if (end - p == 1 && *p == '*') {
		*classes = NULL;
		return true;
	}
	ht = pemalloc(sizeof *ht, 1);
	zend_hash_init(ht, 8, NULL, NULL, 1);
	while (p < end) {
		const char *name = p, *name_end;
		zend_string *lc;

		while (p < end && *p != ',') {
			p++;
		}
		name_end = p;
		if (p < end) {
			p++; /* the comma */
		}
		while (name < name_end && isspace((unsigned char)*name)) {
			name++;
		}
		while (name_end > name && isspace((unsigned char)name_end[-1])) {
			name_end--;
		}
		if (name == name_end) {
			continue; /* "A,,B" and a trailing comma name nothing */
		}
		if (*name == '\\') {
			name++; /* "\\App\\Dto" is written "App\\Dto" by serialize() */
		}
		if (!pc_is_class_name(name, (size_t)(name_end - name))) {
			*bad = name;
			*bad_len = (size_t)(name_end - name);
			pc_classes_free(ht);
			return false;
		}
		lc = zend_string_init(name, (size_t)(name_end - name), 1);
		zend_str_tolower(ZSTR_VAL(lc), ZSTR_LEN(lc));
		zend_hash_add_empty_element(ht, lc);
		zend_string_release(lc);
	}
	*classes = ht;
	return true;
}

/* A list with a name that is not one: ini_set() fails and changes nothing; anywhere else (php.ini,
 * php_admin_value, .htaccess) no class is allowed, so a typo never opens the door to every
 * class. */
static ZEND_INI_MH(OnUpdateAllowedClasses)
{
	HashTable *classes;
	const char *bad = NULL;
	size_t bad_len = 0;

	if (!pc_classes_parse(new_value, &classes, &bad, &bad_len)) {
		if (stage == ZEND_INI_STAGE_RUNTIME) {
			php_error_docref(NULL, E_WARNING, "peakcache.allowed_classes: \"%.*s\" is not a class "
				"name; the setting is unchanged", (int)MIN(bad_len, 128), bad);
			return FAILURE;
		}
		if (stage != ZEND_INI_STAGE_DEACTIVATE) {
			php_error_docref(NULL, E_WARNING, "peakcache.allowed_classes: \"%.*s\" is not a class "
				"name; no class is allowed", (int)MIN(bad_len, 128), bad);
		}
		classes = pemalloc(sizeof *classes, 1);
		zend_hash_init(classes, 0, NULL, NULL, 1);
	}
	pc_classes_free(PEAKCACHE_G(allowed_classes));
	PEAKCACHE_G(allowed_classes) = classes;
	return SUCCESS;
}
/* }}} */

/* {{{ php.ini */
PHP_INI_BEGIN()
	STD_PHP_INI_BOOLEAN("peakcache.enable", "1", PHP_INI_SYSTEM, OnUpdateBool, enable,
		zend_peakcache_globals, peakcache_globals)
	STD_PHP_INI_BOOLEAN("peakcache.enable_cli", "0", PHP_INI_SYSTEM, OnUpdateBool, enable_cli,
		zend_peakcache_globals, peakcache_globals)
	STD_PHP_INI_BOOLEAN("peakcache.shared", "0", PHP_INI_SYSTEM, OnUpdateBool, shared,
		zend_peakcache_globals, peakcache_globals)
	STD_PHP_INI_ENTRY("peakcache.shm_path", "", PHP_INI_SYSTEM, OnUpdateString, shm_path,
		zend_peakcache_globals, peakcache_globals)
	STD_PHP_INI_ENTRY("peakcache.size", "64M", PHP_INI_SYSTEM, OnUpdateLong, size,
		zend_peakcache_globals, peakcache_globals)
	STD_PHP_INI_ENTRY("peakcache.max_object_size", "0", PHP_INI_SYSTEM, OnUpdateLong,
		max_object_size, zend_peakcache_globals, peakcache_globals)
	STD_PHP_INI_ENTRY("peakcache.shards", "0", PHP_INI_SYSTEM, OnUpdateLong, shards,
		zend_peakcache_globals, peakcache_globals)
	STD_PHP_INI_ENTRY("peakcache.lock_timeout", "5000", PHP_INI_SYSTEM, OnUpdateLong,
		lock_timeout, zend_peakcache_globals, peakcache_globals)
	STD_PHP_INI_ENTRY("peakcache.default_ttl", "0", PHP_INI_SYSTEM, OnUpdateLong, default_ttl,
		zend_peakcache_globals, peakcache_globals)
	STD_PHP_INI_ENTRY("peakcache.default_swr", "0", PHP_INI_SYSTEM, OnUpdateLong, default_swr,
		zend_peakcache_globals, peakcache_globals)
	STD_PHP_INI_ENTRY("peakcache.default_sie", "0", PHP_INI_SYSTEM, OnUpdateLong, default_sie,
		zend_peakcache_globals, peakcache_globals)
	PHP_INI_ENTRY("peakcache.allowed_classes", "*", PHP_INI_ALL, OnUpdateAllowedClasses)
PHP_INI_END()
/* }}} */

/* {{{ errors */
static int pc_key_quote_len(const zend_string *key)
{
	return ZSTR_LEN(key) > PC_KEY_QUOTE ? PC_KEY_QUOTE : (int)ZSTR_LEN(key);
}

/* Throws PeakCache\Exception for a library error, with the library's reason. */
static void pc_throw_library(const char *what, peakcache_result rc)
{
	char why[256];
	peakcache_last_error(why, sizeof why);
	zend_throw_exception_ex(peakcache_exception_ce, (zend_long)rc, "%s failed: %s%s%s", what,
		peakcache_result_str(rc), why[0] ? ": " : "", why);
}
/* }}} */

/* Throws PeakCache\Exception for misuse, named after the running method as php-src names it
 * ("PeakCache\Cache::get(): Argument #1 ($key) must not be empty"). */
static ZEND_COLD void pc_throw_misuse(const char *fmt, ...)
{
	va_list ap;
	char *msg;
	const char *space;
	const char *cls = get_active_class_name(&space);

	va_start(ap, fmt);
	zend_vspprintf(&msg, 0, fmt, ap);
	va_end(ap);
	zend_throw_exception_ex(peakcache_exception_ce, 0, "%s%s%s(): %s", cls, space,
		get_active_function_name(), msg);
	efree(msg);
}

/* {{{ argument checks (each throws and returns false on misuse) */
static bool pc_check_key(const zend_string *key, uint32_t arg)
{
	if (ZSTR_LEN(key) == 0) {
		pc_throw_misuse("Argument #%u ($key) must not be empty", arg);
		return false;
	}
	return true;
}

/* Seconds (>= 0) to milliseconds, capped at what the library keeps. */
static bool pc_seconds_to_ms(zend_long seconds, const char *name, uint32_t arg, uint64_t *ms)
{
	if (seconds < 0) {
		pc_throw_misuse("Argument #%u ($%s) must be greater than or equal to 0, " ZEND_LONG_FMT " given",
			arg, name, seconds);
		return false;
	}
	*ms = (uint64_t)seconds >= PC_MAX_WINDOW_MS / 1000 ? PC_MAX_WINDOW_MS : (uint64_t)seconds * 1000;
	return true;
}

/* A nullable window argument: null is the pool's default (PEAKCACHE_WINDOW_DEFAULT). */
static bool pc_window(zend_long seconds, bool is_null, const char *name, uint32_t arg, uint64_t *ms)
{
	if (is_null) {
		*ms = PEAKCACHE_WINDOW_DEFAULT;
		return true;
	}
	return pc_seconds_to_ms(seconds, name, arg, ms);
}

/* A set() ttl: null is peakcache.default_ttl (0 there: as long as the pool keeps anything). */
static bool pc_ttl_arg(zend_long ttl, bool is_null, uint32_t arg, uint64_t *ms)
{
	if (is_null) {
		zend_long def = PEAKCACHE_G(default_ttl);
		if (def <= 0) {
			*ms = PC_MAX_WINDOW_MS;
			return true;
		}
		return pc_seconds_to_ms(def, "ttl", arg, ms);
	}
	return pc_seconds_to_ms(ttl, "ttl", arg, ms);
}

static bool pc_check_tags(HashTable *tags, uint32_t arg)
{
	zval *tag;
	ZEND_HASH_FOREACH_VAL(tags, tag) {
		ZVAL_DEREF(tag);
		if (Z_TYPE_P(tag) != IS_STRING || Z_STRLEN_P(tag) == 0) {
			pc_throw_misuse("Argument #%u ($tags) must contain only non-empty strings",
				arg);
			return false;
		}
	} ZEND_HASH_FOREACH_END();
	return true;
}

/* Borrowed views of a checked tag array, valid while the array lives; efree the result. */
static peakcache_bytes *pc_tag_views(HashTable *tags, size_t *n)
{
	peakcache_bytes *views;
	zval *tag;
	size_t i = 0;

	*n = zend_hash_num_elements(tags);
	if (*n == 0) {
		return NULL;
	}
	views = safe_emalloc(*n, sizeof(peakcache_bytes), 0);
	ZEND_HASH_FOREACH_VAL(tags, tag) {
		ZVAL_DEREF(tag);
		views[i].data = (const uint8_t *)Z_STRVAL_P(tag);
		views[i].len = Z_STRLEN_P(tag);
		i++;
	} ZEND_HASH_FOREACH_END();
	return views;
}
/* }}} */

/* {{{ values: strings as they are, anything else serialized */
static zend_string *pc_encode(const zend_string *key, zval *value, uint32_t *flags)
{
	php_serialize_data_t var_hash;
	smart_str buf = {0};

	ZVAL_DEREF(value);
	if (Z_TYPE_P(value) == IS_STRING) {
		*flags = 0;
		return zend_string_copy(Z_STR_P(value));
	}
	PHP_VAR_SERIALIZE_INIT(var_hash);
	php_var_serialize(&buf, value, &var_hash);
	PHP_VAR_SERIALIZE_DESTROY(var_hash);
	if (EG(exception)) {
		smart_str_free(&buf);
		/* The serializer's exception becomes the previous of ours. */
		zend_throw_exception_ex(peakcache_exception_ce, 0,
			"The value of key \"%.*s\" cannot be serialized", pc_key_quote_len(key), ZSTR_VAL(key));
		return NULL;
	}
	*flags = PEAKCACHE_PHP_SERIALIZED;
	return buf.s ? smart_str_extract(&buf) : ZSTR_EMPTY_ALLOC();
}

/* A stored value's bytes (flags: its flags word) into rv: a string as it is, anything else
 * unserialized. False (with an exception) when its bytes do not unserialize. An object of a
 * class peakcache.allowed_classes does not allow comes back as __PHP_Incomplete_Class, as from
 * unserialize(): none of its methods run. */
static bool pc_decode_bytes(const uint8_t *ptr, size_t len, uint32_t flags, zval *rv)
{
	php_unserialize_data_t var_hash;
	HashTable *outer_classes;
	const unsigned char *cur;
	bool ok;

	if (!(flags & PEAKCACHE_PHP_SERIALIZED)) {
		ZVAL_STRINGL_FAST(rv, (const char *)ptr, len);
		return true;
	}
	cur = (const unsigned char *)ptr;
	PHP_VAR_UNSERIALIZE_INIT(var_hash);
	/* The context may be an enclosing unserialize()'s (a __wakeup reading the cache): its own
	 * allowed classes are put back, as unserialize() does. */
	outer_classes = php_var_unserialize_get_allowed_classes(var_hash);
	php_var_unserialize_set_allowed_classes(var_hash, PEAKCACHE_G(allowed_classes));
	ok = php_var_unserialize(rv, &cur, (const unsigned char *)ptr + len, &var_hash);
	php_var_unserialize_set_allowed_classes(var_hash, outer_classes);
	PHP_VAR_UNSERIALIZE_DESTROY(var_hash);
	if (!ok) {
		zval_ptr_dtor(rv);
		ZVAL_UNDEF(rv);
		if (!EG(exception)) {
			zend_throw_exception_ex(peakcache_exception_ce, 0,
				"A stored value (%zu bytes) cannot be unserialized", len);
		}
		return false;
	}
	return true;
}

/* The entry's value into rv (see pc_decode_bytes). */
static bool pc_decode(const peakcache_entry *entry, zval *rv)
{
	const uint8_t *ptr = NULL;
	size_t len = 0;

	if (peakcache_entry_body(entry, &ptr, &len) != PEAKCACHE_OK) {
		pc_throw_library("peakcache_entry_body", PEAKCACHE_ERR_NULL);
		return false;
	}
	return pc_decode_bytes(ptr, len, peakcache_entry_flags(entry), rv);
}

/* Throws when a value this size would be refused, before any fill is taken or consumed. */
static bool pc_check_size(const zend_string *key, const zend_string *bytes)
{
	uint64_t max = peakcache_cache_max_object_bytes(peakcache_pool);
	uint64_t weight = (uint64_t)ZSTR_LEN(key) + 2 + 4 + ZSTR_LEN(bytes) + PEAKCACHE_ENTRY_OVERHEAD;

	if (pc_pool_shared) {
		/* A record of the region: 80-byte header, key, the encoded response (5 bytes + body). */
		weight = (uint64_t)ZSTR_LEN(key) + 80 + 5 + ZSTR_LEN(bytes);
	}

	if (max != 0 && weight > max) {
		zend_throw_exception_ex(peakcache_exception_ce, PEAKCACHE_ERR_TOO_LARGE,
			"The value of key \"%.*s\" weighs %" PRIu64 " bytes, over the object limit of %" PRIu64
			" bytes (peakcache.max_object_size, peakcache.size)",
			pc_key_quote_len(key), ZSTR_VAL(key), weight, max);
		return false;
	}
	return true;
}

static peakcache_response *pc_response(const zend_string *bytes, uint32_t flags)
{
	peakcache_response *resp = NULL;
	peakcache_result rc = peakcache_response_new(200, &resp);

	if (rc == PEAKCACHE_OK) {
		rc = peakcache_response_append_body(resp, (const uint8_t *)ZSTR_VAL(bytes), ZSTR_LEN(bytes));
	}
	if (rc == PEAKCACHE_OK) {
		rc = peakcache_response_set_flags(resp, flags);
	}
	if (rc != PEAKCACHE_OK) {
		peakcache_response_free(resp);
		pc_throw_library("peakcache_response_new", rc);
		return NULL;
	}
	return resp;
}

/* The outcome of a commit: true when stored, else an exception. */
static bool pc_commit_result(const zend_string *key, peakcache_result rc)
{
	if (rc == PEAKCACHE_OK) {
		return true;
	}
	if (rc == PEAKCACHE_ERR_TOO_LARGE) {
		zend_throw_exception_ex(peakcache_exception_ce, rc,
			"The value of key \"%.*s\" is over the object limit and was not stored",
			pc_key_quote_len(key), ZSTR_VAL(key));
		return false;
	}
	pc_throw_library("commit", rc);
	return false;
}

/* Completes a fill with bytes (consumes *fill whatever happens). */
static bool pc_fill_commit(peakcache_fill **fill, const zend_string *key, const zend_string *bytes,
	uint32_t flags, uint64_t ttl_ms, uint64_t swr_ms, uint64_t sie_ms, HashTable *tags)
{
	size_t ntags = 0;
	peakcache_bytes *views;
	peakcache_response *resp = pc_response(bytes, flags);
	peakcache_result rc;

	if (!resp) {
		peakcache_fill_abandon(*fill);
		*fill = NULL;
		return false;
	}
	views = tags ? pc_tag_views(tags, &ntags) : NULL;
	rc = peakcache_fill_commit(fill, &resp, ttl_ms, swr_ms, sie_ms, views, ntags);
	if (views) {
		efree(views);
	}
	return pc_commit_result(key, rc);
}

static bool pc_refresh_commit(peakcache_refresh **refresh, const zend_string *key,
	const zend_string *bytes, uint32_t flags, uint64_t ttl_ms, uint64_t swr_ms, uint64_t sie_ms,
	HashTable *tags)
{
	size_t ntags = 0;
	peakcache_bytes *views;
	peakcache_response *resp = pc_response(bytes, flags);
	peakcache_result rc;

	if (!resp) {
		peakcache_refresh_abandon(*refresh);
		*refresh = NULL;
		return false;
	}
	views = tags ? pc_tag_views(tags, &ntags) : NULL;
	rc = peakcache_refresh_commit(refresh, &resp, ttl_ms, swr_ms, sie_ms, views, ntags);
	if (views) {
		efree(views);
	}
	return pc_commit_result(key, rc);
}
/* }}} */

/* {{{ lookups */
static bool pc_lookup(const zend_string *key, peakcache_lookup_result *r)
{
	peakcache_result rc = peakcache_lookup(peakcache_pool, (const uint8_t *)ZSTR_VAL(key),
		ZSTR_LEN(key), r);
	if (rc != PEAKCACHE_OK) {
		pc_throw_library("peakcache_lookup", rc);
		return false;
	}
	return true;
}

/* What a read of a fresh value found. */
typedef enum {
	PC_FOUND,
	PC_MISSING,
	PC_FAILED /* an exception is thrown */
} pc_found;

/* The body and flags of key's fresh entry (PSR-16: an expired value is a miss):
 * peakcache_get_body, which takes no part in the lifecycle (no fill, no refresh ticket, no
 * waiting for another caller's computation), is counted once in the stats (fresh or miss), and
 * copies the body once into a buffer of this thread instead of making a new entry: *ptr is valid
 * until this thread's next call. */
static pc_found pc_fresh_body(const zend_string *key, const uint8_t **ptr, size_t *len,
	uint32_t *flags)
{
	bool found = false;
	peakcache_result rc = peakcache_get_body(peakcache_pool, (const uint8_t *)ZSTR_VAL(key),
		ZSTR_LEN(key), &found, ptr, len, flags);

	if (rc != PEAKCACHE_OK) {
		pc_throw_library("peakcache_get_body", rc);
		return PC_FAILED;
	}
	return found ? PC_FOUND : PC_MISSING;
}

/* The fresh value of key into rv (see pc_fresh_body). The body's buffer is reused by the next
 * call: a string is copied out of it at once; serialized bytes first, as unserializing them may
 * run a Serializable::unserialize that reads the cache again. */
static pc_found pc_fresh_value(const zend_string *key, zval *rv)
{
	const uint8_t *ptr = NULL;
	size_t len = 0;
	uint32_t flags = 0;
	pc_found found = pc_fresh_body(key, &ptr, &len, &flags);
	char *copy;
	bool ok;

	if (found != PC_FOUND) {
		return found;
	}
	if (!(flags & PEAKCACHE_PHP_SERIALIZED)) {
		ok = pc_decode_bytes(ptr, len, flags, rv);
	} else {
		copy = emalloc(len ? len : 1);
		memcpy(copy, ptr, len);
		ok = pc_decode_bytes((const uint8_t *)copy, len, flags, rv);
		efree(copy);
	}
	return ok ? PC_FOUND : PC_FAILED;
}

static uint64_t pc_wait_timeout_ms(void)
{
	zend_long t = PEAKCACHE_G(lock_timeout);
	return (t > 0 ? (uint64_t)t : 0) + PC_WAIT_SLACK_MS;
}

/* A fill held by this request while it computes: registered so that request shutdown abandons
 * it if we never come back (a fatal error, exit()). */
static void pc_hold_fill(zend_string *key, peakcache_fill *fill)
{
	if (!PEAKCACHE_G(fills)) {
		ALLOC_HASHTABLE(PEAKCACHE_G(fills));
		zend_hash_init(PEAKCACHE_G(fills), 4, NULL, NULL, 0);
	}
	zend_hash_update_ptr(PEAKCACHE_G(fills), key, fill);
}

static peakcache_fill *pc_release_fill(zend_string *key)
{
	peakcache_fill *fill = NULL;
	if (PEAKCACHE_G(fills)) {
		fill = zend_hash_find_ptr(PEAKCACHE_G(fills), key);
		zend_hash_del(PEAKCACHE_G(fills), key);
	}
	return fill;
}

static bool pc_check_not_filling(zend_string *key)
{
	if (PEAKCACHE_G(fills) && zend_hash_exists(PEAKCACHE_G(fills), key)) {
		pc_throw_misuse("key \"%.*s\" is being computed by remember() in this request; "
			"waiting for it would wait for itself",
			pc_key_quote_len(key), ZSTR_VAL(key));
		return false;
	}
	return true;
}

static bool pc_exception_is_exit(void)
{
	return EG(exception)
		&& (zend_is_unwind_exit(EG(exception)) || zend_is_graceful_exit(EG(exception)));
}

/* Calls $compute() into rv. False when it threw (EG(exception) is set; rv is UNDEF). */
static bool pc_call(zend_fcall_info *fci, zend_fcall_info_cache *fcc, zval *rv)
{
	zval ret;

	ZVAL_UNDEF(rv);
	ZVAL_UNDEF(&ret);
	fci->retval = &ret;
	fci->param_count = 0;
	fci->params = NULL;
	fci->named_params = NULL;
	if (zend_call_function(fci, fcc) != SUCCESS || EG(exception)) {
		zval_ptr_dtor(&ret);
		return false;
	}
	ZVAL_COPY_DEREF(rv, &ret);
	zval_ptr_dtor(&ret);
	return true;
}
/* }}} */

/* {{{ deferred refreshes */
static void pc_deferred_dtor(zval *zv)
{
	pc_deferred *d = Z_PTR_P(zv);
	peakcache_refresh_abandon(d->ticket);
	zend_string_release(d->key);
	zval_ptr_dtor(&d->compute);
	zval_ptr_dtor(&d->tags);
	efree(d);
}

static void pc_fill_dtor(zval *zv)
{
	peakcache_fill_abandon(Z_PTR_P(zv));
}

static void pc_register_shutdown(void)
{
	php_shutdown_function_entry entry;
	zval callable, finish;

	if (PEAKCACHE_G(shutdown_registered)) {
		return;
	}
	memset(&entry, 0, sizeof entry);
	ZVAL_STRING(&callable, "PeakCache\\Cache::runPendingRefreshes");
	if (zend_fcall_info_init(&callable, 0, &entry.fci, &entry.fci_cache, NULL, NULL) != SUCCESS) {
		zval_ptr_dtor(&callable);
		return;
	}
	/* entry.fci.function_name now owns callable; the shutdown list frees it and the args. */
	ZVAL_TRUE(&finish);
	zend_fcall_info_argn(&entry.fci, 1, &finish);
	if (!append_user_shutdown_function(&entry)) {
		zend_fcall_info_args_clear(&entry.fci, true);
		zval_ptr_dtor(&callable);
		return;
	}
	PEAKCACHE_G(shutdown_registered) = true;
}

static void pc_defer_refresh(peakcache_refresh *ticket, zend_string *key, zval *compute,
	zval *tags, uint64_t ttl_ms, uint64_t swr_ms, uint64_t sie_ms)
{
	pc_deferred *d = emalloc(sizeof *d);

	d->ticket = ticket;
	d->key = zend_string_copy(key);
	ZVAL_COPY(&d->compute, compute);
	ZVAL_COPY(&d->tags, tags);
	d->ttl_ms = ttl_ms;
	d->swr_ms = swr_ms;
	d->sie_ms = sie_ms;
	if (!PEAKCACHE_G(deferred)) {
		ALLOC_HASHTABLE(PEAKCACHE_G(deferred));
		zend_hash_init(PEAKCACHE_G(deferred), 4, NULL, pc_deferred_dtor, 0);
	}
	zend_hash_next_index_insert_ptr(PEAKCACHE_G(deferred), d);
	pc_register_shutdown();
}

/* Reports a refresh that threw as a warning (the stale value was already served; the next
 * refresh comes after the pool's back-off), and clears the exception. */
static void pc_warn_refresh_failed(const zend_string *key)
{
	zend_object *ex = EG(exception);
	zval rv, *msg;
	zend_string *text;

	GC_ADDREF(ex);
	zend_clear_exception();
	msg = zend_read_property_ex(ex->ce, ex, ZSTR_KNOWN(ZEND_STR_MESSAGE), 1, &rv);
	text = zval_get_string(msg);
	php_error_docref(NULL, E_WARNING, "Refresh of key \"%.*s\" failed: %s: %s",
		pc_key_quote_len(key), ZSTR_VAL(key), ZSTR_VAL(ex->ce->name), ZSTR_VAL(text));
	zend_string_release(text);
	OBJ_RELEASE(ex);
}

/* Runs one refresh. False when the request is exiting (exit() inside $compute): stop there. */
static bool pc_refresh_one(pc_deferred *d)
{
	zend_fcall_info fci;
	zend_fcall_info_cache fcc;
	char *error = NULL;
	zval value;
	zend_string *bytes;
	uint32_t flags;

	if (zend_fcall_info_init(&d->compute, 0, &fci, &fcc, NULL, &error) != SUCCESS) {
		if (error) {
			efree(error);
		}
		peakcache_refresh_abandon(d->ticket);
		d->ticket = NULL;
		return true;
	}
	if (!pc_call(&fci, &fcc, &value)) {
		if (pc_exception_is_exit()) {
			return false; /* the ticket is abandoned with the record */
		}
		peakcache_refresh_fail(&d->ticket);
		pc_warn_refresh_failed(d->key);
		return true;
	}
	bytes = pc_encode(d->key, &value, &flags);
	zval_ptr_dtor(&value);
	if (!bytes || !pc_check_size(d->key, bytes)
		|| !pc_refresh_commit(&d->ticket, d->key, bytes, flags, d->ttl_ms, d->swr_ms, d->sie_ms,
			Z_ARRVAL(d->tags))) {
		if (bytes) {
			zend_string_release(bytes);
		}
		peakcache_refresh_fail(&d->ticket);
		if (EG(exception) && !pc_exception_is_exit()) {
			pc_warn_refresh_failed(d->key);
		}
		return !EG(exception);
	}
	zend_string_release(bytes);
	return true;
}

/* Finishes the response where the SAPI can, so the refreshes do not delay it. */
static void pc_finish_response(void)
{
	static const char *const finishers[] = {"fastcgi_finish_request", "litespeed_finish_request"};
	size_t i;

	for (i = 0; i < sizeof finishers / sizeof finishers[0]; i++) {
		zend_function *fn = zend_hash_str_find_ptr(EG(function_table), finishers[i],
			strlen(finishers[i]));
		if (fn) {
			zval rv;
			ZVAL_UNDEF(&rv);
			zend_call_known_function(fn, NULL, NULL, &rv, 0, NULL, NULL);
			zval_ptr_dtor(&rv);
			return;
		}
	}
}

static zend_long pc_run_deferred(bool finish_response)
{
	HashTable *ht = PEAKCACHE_G(deferred);
	zend_long ran = 0;

	/* A refresh deferred from now on (by a later shutdown function, or after a manual run)
	 * registers the shutdown function again. */
	PEAKCACHE_G(shutdown_registered) = false;
	if (!ht || zend_hash_num_elements(ht) == 0) {
		return 0;
	}
	if (finish_response) {
		pc_finish_response();
	}
	/* Refreshes may defer more (a $compute calling remember()); they run too, in order. The
	 * record stays in the table while it runs, so a fatal error leaves it to RSHUTDOWN. */
	while (zend_hash_num_elements(ht) > 0 && !EG(exception)) {
		HashPosition pos;
		zend_ulong idx;
		pc_deferred *d;
		bool go_on;

		zend_hash_internal_pointer_reset_ex(ht, &pos);
		zend_hash_get_current_key_ex(ht, NULL, &idx, &pos);
		d = zend_hash_get_current_data_ptr_ex(ht, &pos);
		go_on = pc_refresh_one(d);
		zend_hash_index_del(ht, idx);
		ran++;
		if (!go_on) {
			break;
		}
	}
	return ran;
}
/* }}} */

/* Runs now the refresh this request deferred for key, if any: a lookup that finds the key
 * being refreshed (a hard purge while the refresh was pending turns it into the key's fill)
 * would otherwise wait for this very request, which runs it only at shutdown. */
static bool pc_run_deferred_for(const zend_string *key)
{
	HashTable *ht = PEAKCACHE_G(deferred);
	zend_ulong idx;
	pc_deferred *d;

	if (!ht) {
		return false;
	}
	ZEND_HASH_FOREACH_NUM_KEY_PTR(ht, idx, d) {
		if (d->ticket && zend_string_equals(d->key, (zend_string *)key)) {
			pc_refresh_one(d);
			zend_hash_index_del(ht, idx);
			return true;
		}
	} ZEND_HASH_FOREACH_END();
	return false;
}
/* }}} */

/* {{{ iterables: arrays and Traversable objects */
typedef bool (*pc_each_fn)(zval *key, zval *value, void *ctx);

typedef struct {
	pc_each_fn fn;
	void *ctx;
	zend_ulong index;
	bool stopped;
} pc_iter_ctx;

static int pc_iter_apply(zend_object_iterator *iter, void *puser)
{
	pc_iter_ctx *c = puser;
	zval key, *value = iter->funcs->get_current_data(iter);
	bool go_on;

	if (EG(exception) || !value) {
		return ZEND_HASH_APPLY_STOP;
	}
	if (iter->funcs->get_current_key) {
		iter->funcs->get_current_key(iter, &key);
		if (EG(exception)) {
			return ZEND_HASH_APPLY_STOP;
		}
	} else {
		ZVAL_LONG(&key, (zend_long)c->index);
	}
	c->index++;
	go_on = c->fn(&key, value, c->ctx);
	zval_ptr_dtor(&key);
	if (!go_on) {
		c->stopped = true;
		return ZEND_HASH_APPLY_STOP;
	}
	return ZEND_HASH_APPLY_KEEP;
}

/* Calls fn(key, value, ctx) for each pair until it returns false. False on an exception. */
static bool pc_each(zval *iterable, pc_each_fn fn, void *ctx)
{
	if (Z_TYPE_P(iterable) == IS_ARRAY) {
		zend_ulong h;
		zend_string *k;
		zval *v, key;
		ZEND_HASH_FOREACH_KEY_VAL(Z_ARRVAL_P(iterable), h, k, v) {
			if (k) {
				ZVAL_STR(&key, k);
			} else {
				ZVAL_LONG(&key, (zend_long)h);
			}
			ZVAL_DEREF(v);
			if (!fn(&key, v, ctx)) {
				break;
			}
		} ZEND_HASH_FOREACH_END();
	} else {
		pc_iter_ctx c = {fn, ctx, 0, false};
		spl_iterator_apply(iterable, pc_iter_apply, &c);
	}
	return !EG(exception);
}

/* A key from an iterable: a string as it is, an integer as its decimal string. NULL (with an
 * exception) for anything else. */
static zend_string *pc_key_of(zval *zkey)
{
	ZVAL_DEREF(zkey);
	if (Z_TYPE_P(zkey) == IS_STRING) {
		if (Z_STRLEN_P(zkey) == 0) {
			pc_throw_misuse("keys must not be empty");
			return NULL;
		}
		return zend_string_copy(Z_STR_P(zkey));
	}
	if (Z_TYPE_P(zkey) == IS_LONG) {
		return zend_long_to_str(Z_LVAL_P(zkey));
	}
	pc_throw_misuse("keys must be strings, %s given",
		zend_zval_type_name(zkey));
	return NULL;
}
/* }}} */

/* {{{ the operations behind the methods */
static bool pc_delete(const zend_string *key)
{
	peakcache_result rc = peakcache_purge(peakcache_pool, (const uint8_t *)ZSTR_VAL(key),
		ZSTR_LEN(key), false, NULL);
	if (rc != PEAKCACHE_OK) {
		pc_throw_library("peakcache_purge", rc);
		return false;
	}
	return true;
}

/* Stores value under key, replacing what is there (peakcache_insert: outside the lifecycle, so a
 * fill of the key in flight elsewhere goes on and its waiters keep waiting for it). False without
 * an exception when the value is too large to store. */
static bool pc_set(zend_string *key, zval *value, uint64_t ttl_ms, HashTable *tags)
{
	uint32_t flags;
	zend_string *bytes;
	peakcache_response *resp;
	peakcache_bytes *views = NULL;
	size_t ntags = 0;
	peakcache_result rc;

	if (!pc_check_not_filling(key)) {
		return false;
	}
	bytes = pc_encode(key, value, &flags);
	if (!bytes) {
		return false;
	}
	if (!pc_check_size(key, bytes)) {
		zend_string_release(bytes);
		return false;
	}
	resp = pc_response(bytes, flags);
	zend_string_release(bytes);
	if (!resp) {
		return false;
	}
	if (tags) {
		views = pc_tag_views(tags, &ntags);
	}
	rc = peakcache_insert(peakcache_pool, (const uint8_t *)ZSTR_VAL(key), ZSTR_LEN(key), &resp,
		ttl_ms, PEAKCACHE_WINDOW_DEFAULT, PEAKCACHE_WINDOW_DEFAULT, views, ntags);
	if (views) {
		efree(views);
	}
	return pc_commit_result(key, rc);
}

typedef struct {
	zend_fcall_info *fci;
	zend_fcall_info_cache *fcc;
	zend_string *key;
	uint64_t ttl_ms;
	uint64_t swr_ms;
	uint64_t sie_ms;
	zval *tags;
} pc_remember_args;

/* pc_call for a fill holder: a fatal error (a bailout, which longjmps past this frame) first
 * abandons the fill, so waiters and the next request's lookups go on at once. */
static bool pc_call_guarded(pc_remember_args *a, zval *rv)
{
	bool ok = false;

	zend_try {
		ok = pc_call(a->fci, a->fcc, rv);
	} zend_catch {
		peakcache_fill_abandon(pc_release_fill(a->key));
		zend_bailout();
	} zend_end_try();
	return ok;
}

/* The miss path of remember(): this caller holds the fill; compute, then commit or fail. */
static void pc_remember_fill(pc_remember_args *a, peakcache_fill *fill, zval *return_value)
{
	zval value;
	zend_string *bytes;
	uint32_t flags;

	pc_hold_fill(a->key, fill);
	if (!pc_call_guarded(a, &value)) {
		peakcache_entry *stale = NULL;
		fill = pc_release_fill(a->key);
		if (pc_exception_is_exit()) {
			peakcache_fill_abandon(fill);
			return;
		}
		/* Waiters get the stale-if-error value too, or are told the fill failed. */
		if (peakcache_fill_fail(&fill, &stale) == PEAKCACHE_OK && stale) {
			zend_clear_exception();
			pc_decode(stale, return_value);
			peakcache_entry_free(stale);
		}
		return;
	}
	fill = pc_release_fill(a->key);
	bytes = pc_encode(a->key, &value, &flags);
	if (!bytes) {
		peakcache_fill_abandon(fill);
		zval_ptr_dtor(&value);
		return;
	}
	if (!pc_check_size(a->key, bytes)) {
		/* Waiters compute for themselves; the key is not held up for anyone. */
		peakcache_fill_abandon(fill);
		zend_string_release(bytes);
		zval_ptr_dtor(&value);
		return;
	}
	if (pc_fill_commit(&fill, a->key, bytes, flags, a->ttl_ms, a->swr_ms, a->sie_ms,
			Z_ARRVAL_P(a->tags))) {
		ZVAL_COPY_VALUE(return_value, &value);
	} else {
		zval_ptr_dtor(&value);
	}
	zend_string_release(bytes);
}

/* Computes without the cache (pass-through, a failed or timed-out wait). */
static void pc_remember_uncached(pc_remember_args *a, zval *return_value)
{
	zval value;
	if (pc_call(a->fci, a->fcc, &value)) {
		ZVAL_COPY_VALUE(return_value, &value);
	}
}
/* }}} */

/* {{{ PeakCache\Cache */
ZEND_METHOD(PeakCache_Cache, __construct)
{
	ZEND_PARSE_PARAMETERS_NONE();
}

ZEND_METHOD(PeakCache_Cache, get)
{
	zend_string *key;
	zval *def = NULL;

	ZEND_PARSE_PARAMETERS_START(1, 2)
		Z_PARAM_STR(key)
		Z_PARAM_OPTIONAL
		Z_PARAM_ZVAL(def)
	ZEND_PARSE_PARAMETERS_END();

	if (!pc_check_key(key, 1)) {
		RETURN_THROWS();
	}
	if (peakcache_pool) {
		switch (pc_fresh_value(key, return_value)) {
			case PC_FOUND:
				return;
			case PC_FAILED:
				RETURN_THROWS();
			case PC_MISSING:
				break;
		}
	}
	if (def) {
		RETURN_COPY(def);
	}
	RETURN_NULL();
}

ZEND_METHOD(PeakCache_Cache, set)
{
	zend_string *key;
	zval *value;
	zend_long ttl = 0;
	bool ttl_null = true;
	HashTable *tags = NULL;
	uint64_t ttl_ms;
	bool stored;

	ZEND_PARSE_PARAMETERS_START(2, 4)
		Z_PARAM_STR(key)
		Z_PARAM_ZVAL(value)
		Z_PARAM_OPTIONAL
		Z_PARAM_LONG_OR_NULL(ttl, ttl_null)
		Z_PARAM_ARRAY_HT(tags)
	ZEND_PARSE_PARAMETERS_END();

	if (!pc_check_key(key, 1) || (tags && !pc_check_tags(tags, 4))) {
		RETURN_THROWS();
	}
	if (!pc_ttl_arg(ttl, ttl_null, 3, &ttl_ms)) {
		RETURN_THROWS();
	}
	if (!peakcache_pool) {
		RETURN_FALSE;
	}
	if (ttl_ms == 0) {
		/* PSR-16: a ttl of 0 deletes the item. */
		if (!pc_delete(key)) {
			RETURN_THROWS();
		}
		RETURN_TRUE;
	}
	stored = pc_set(key, value, ttl_ms, tags);
	if (EG(exception)) {
		RETURN_THROWS();
	}
	RETURN_BOOL(stored);
}

ZEND_METHOD(PeakCache_Cache, delete)
{
	zend_string *key;

	ZEND_PARSE_PARAMETERS_START(1, 1)
		Z_PARAM_STR(key)
	ZEND_PARSE_PARAMETERS_END();

	if (!pc_check_key(key, 1)) {
		RETURN_THROWS();
	}
	if (!peakcache_pool) {
		RETURN_FALSE;
	}
	if (!pc_delete(key)) {
		RETURN_THROWS();
	}
	RETURN_TRUE;
}

ZEND_METHOD(PeakCache_Cache, has)
{
	zend_string *key;
	const uint8_t *ptr;
	size_t len;
	uint32_t flags;
	pc_found found;

	ZEND_PARSE_PARAMETERS_START(1, 1)
		Z_PARAM_STR(key)
	ZEND_PARSE_PARAMETERS_END();

	if (!pc_check_key(key, 1)) {
		RETURN_THROWS();
	}
	if (!peakcache_pool) {
		RETURN_FALSE;
	}
	found = pc_fresh_body(key, &ptr, &len, &flags);
	if (found == PC_FAILED) {
		RETURN_THROWS();
	}
	RETURN_BOOL(found == PC_FOUND);
}

ZEND_METHOD(PeakCache_Cache, clear)
{
	peakcache_result rc;

	ZEND_PARSE_PARAMETERS_NONE();

	if (!peakcache_pool) {
		RETURN_FALSE;
	}
	rc = peakcache_clear(peakcache_pool);
	if (rc != PEAKCACHE_OK) {
		pc_throw_library("peakcache_clear", rc);
		RETURN_THROWS();
	}
	RETURN_TRUE;
}

typedef struct {
	zval *result;
	zval *def;
} pc_get_multiple_ctx;

static bool pc_get_one(zval *zkey, zval *zkey_as_value, void *ctx)
{
	pc_get_multiple_ctx *c = ctx;
	zend_string *key = pc_key_of(zkey_as_value);
	pc_found found = PC_MISSING;
	zval value;

	(void)zkey;
	if (!key) {
		return false;
	}
	ZVAL_UNDEF(&value);
	if (peakcache_pool) {
		found = pc_fresh_value(key, &value);
	}
	if (found == PC_FAILED) {
		zend_string_release(key);
		return false;
	}
	if (found == PC_MISSING) {
		ZVAL_COPY(&value, c->def);
	}
	zend_symtable_update(Z_ARRVAL_P(c->result), key, &value);
	zend_string_release(key);
	return true;
}

ZEND_METHOD(PeakCache_Cache, getMultiple)
{
	zval *keys, *def = NULL, null_def;
	pc_get_multiple_ctx c;

	ZEND_PARSE_PARAMETERS_START(1, 2)
		Z_PARAM_ITERABLE(keys)
		Z_PARAM_OPTIONAL
		Z_PARAM_ZVAL(def)
	ZEND_PARSE_PARAMETERS_END();

	ZVAL_NULL(&null_def);
	array_init(return_value);
	c.result = return_value;
	c.def = def ? def : &null_def;
	if (!pc_each(keys, pc_get_one, &c)) {
		RETURN_THROWS();
	}
}

typedef struct {
	uint64_t ttl_ms;
	HashTable *tags;
	bool all_stored;
} pc_set_multiple_ctx;

static bool pc_set_one(zval *zkey, zval *value, void *ctx)
{
	pc_set_multiple_ctx *c = ctx;
	zend_string *key = pc_key_of(zkey);

	if (!key) {
		return false;
	}
	if (c->ttl_ms == 0) {
		pc_delete(key);
	} else if (!pc_set(key, value, c->ttl_ms, c->tags)) {
		c->all_stored = false;
	}
	zend_string_release(key);
	return !EG(exception);
}

ZEND_METHOD(PeakCache_Cache, setMultiple)
{
	zval *values;
	zend_long ttl = 0;
	bool ttl_null = true;
	HashTable *tags = NULL;
	pc_set_multiple_ctx c;

	ZEND_PARSE_PARAMETERS_START(1, 3)
		Z_PARAM_ITERABLE(values)
		Z_PARAM_OPTIONAL
		Z_PARAM_LONG_OR_NULL(ttl, ttl_null)
		Z_PARAM_ARRAY_HT(tags)
	ZEND_PARSE_PARAMETERS_END();

	if ((tags && !pc_check_tags(tags, 3)) || !pc_ttl_arg(ttl, ttl_null, 2, &c.ttl_ms)) {
		RETURN_THROWS();
	}
	if (!peakcache_pool) {
		RETURN_FALSE;
	}
	c.tags = tags;
	c.all_stored = true;
	if (!pc_each(values, pc_set_one, &c)) {
		RETURN_THROWS();
	}
	RETURN_BOOL(c.all_stored);
}

static bool pc_delete_one(zval *zkey, zval *zkey_as_value, void *ctx)
{
	zend_string *key = pc_key_of(zkey_as_value);
	(void)zkey;
	(void)ctx;
	if (!key) {
		return false;
	}
	if (peakcache_pool) {
		pc_delete(key);
	}
	zend_string_release(key);
	return !EG(exception);
}

ZEND_METHOD(PeakCache_Cache, deleteMultiple)
{
	zval *keys;

	ZEND_PARSE_PARAMETERS_START(1, 1)
		Z_PARAM_ITERABLE(keys)
	ZEND_PARSE_PARAMETERS_END();

	if (!pc_each(keys, pc_delete_one, NULL)) {
		RETURN_THROWS();
	}
	RETURN_BOOL(peakcache_pool != NULL);
}

ZEND_METHOD(PeakCache_Cache, remember)
{
	zend_string *key;
	zend_fcall_info fci;
	zend_fcall_info_cache fcc;
	zend_long ttl, swr = 0, sie = 0;
	bool swr_null = true, sie_null = true;
	zval *tags = NULL, empty_tags;
	pc_remember_args a;
	peakcache_lookup_result r;
	peakcache_wait_result w;

	ZEND_PARSE_PARAMETERS_START(3, 6)
		Z_PARAM_STR(key)
		Z_PARAM_FUNC(fci, fcc)
		Z_PARAM_LONG(ttl)
		Z_PARAM_OPTIONAL
		Z_PARAM_LONG_OR_NULL(swr, swr_null)
		Z_PARAM_LONG_OR_NULL(sie, sie_null)
		Z_PARAM_ARRAY(tags)
	ZEND_PARSE_PARAMETERS_END();

	if (!pc_check_key(key, 1)
		|| !pc_seconds_to_ms(ttl, "ttl", 3, &a.ttl_ms)
		|| !pc_window(swr, swr_null, "swr", 4, &a.swr_ms)
		|| !pc_window(sie, sie_null, "sie", 5, &a.sie_ms)
		|| (tags && !pc_check_tags(Z_ARRVAL_P(tags), 6))) {
		RETURN_THROWS();
	}
	if (!tags) {
		ZVAL_EMPTY_ARRAY(&empty_tags);
		tags = &empty_tags;
	}
	a.fci = &fci;
	a.fcc = &fcc;
	a.key = key;
	a.tags = tags;

	if (!peakcache_pool) {
		pc_remember_uncached(&a, return_value);
		return;
	}
	if (!pc_check_not_filling(key) || !pc_lookup(key, &r)) {
		RETURN_THROWS();
	}
	switch (r.kind) {
		case PEAKCACHE_LOOKUP_FRESH:
		case PEAKCACHE_LOOKUP_STALE:
			if (r.refresh) {
				/* Served stale now; refreshed once, after the response. */
				pc_defer_refresh(r.refresh, key, &fci.function_name, tags, a.ttl_ms, a.swr_ms,
					a.sie_ms);
			}
			pc_decode(r.entry, return_value);
			peakcache_entry_free(r.entry);
			return;
		case PEAKCACHE_LOOKUP_MISS:
			pc_remember_fill(&a, r.fill, return_value);
			return;
		case PEAKCACHE_LOOKUP_WAIT:
			pc_run_deferred_for(key);
			if (EG(exception)) {
				peakcache_waiter_free(r.waiter);
				RETURN_THROWS();
			}
			if (peakcache_waiter_wait(&r.waiter, pc_wait_timeout_ms(), &w) != PEAKCACHE_OK) {
				pc_throw_library("peakcache_waiter_wait", PEAKCACHE_ERR_NULL);
				RETURN_THROWS();
			}
			switch (w.kind) {
				case PEAKCACHE_WAIT_HIT:
					pc_decode(w.entry, return_value);
					peakcache_entry_free(w.entry);
					return;
				case PEAKCACHE_WAIT_FILL:
					pc_remember_fill(&a, w.fill, return_value);
					return;
				default:
					/* Not cacheable, failed with nothing stale, or timed out: compute for
					 * ourselves, uncached. */
					pc_remember_uncached(&a, return_value);
					return;
			}
		case PEAKCACHE_LOOKUP_PASS:
		default:
			pc_remember_uncached(&a, return_value);
			return;
	}
}

ZEND_METHOD(PeakCache_Cache, purgeTag)
{
	zend_string *tag;
	bool soft = false;
	peakcache_result rc;

	ZEND_PARSE_PARAMETERS_START(1, 2)
		Z_PARAM_STR(tag)
		Z_PARAM_OPTIONAL
		Z_PARAM_BOOL(soft)
	ZEND_PARSE_PARAMETERS_END();

	if (ZSTR_LEN(tag) == 0) {
		pc_throw_misuse("Argument #1 ($tag) must not be empty");
		RETURN_THROWS();
	}
	if (!peakcache_pool) {
		return;
	}
	rc = peakcache_purge_tag(peakcache_pool, (const uint8_t *)ZSTR_VAL(tag), ZSTR_LEN(tag), soft);
	if (rc != PEAKCACHE_OK) {
		pc_throw_library("peakcache_purge_tag", rc);
		RETURN_THROWS();
	}
}

ZEND_METHOD(PeakCache_Cache, purge)
{
	zend_string *key;
	bool soft = false, found = false;
	peakcache_result rc;

	ZEND_PARSE_PARAMETERS_START(1, 2)
		Z_PARAM_STR(key)
		Z_PARAM_OPTIONAL
		Z_PARAM_BOOL(soft)
	ZEND_PARSE_PARAMETERS_END();

	if (!pc_check_key(key, 1)) {
		RETURN_THROWS();
	}
	if (!peakcache_pool) {
		RETURN_FALSE;
	}
	rc = peakcache_purge(peakcache_pool, (const uint8_t *)ZSTR_VAL(key), ZSTR_LEN(key), soft, &found);
	if (rc != PEAKCACHE_OK) {
		pc_throw_library("peakcache_purge", rc);
		RETURN_THROWS();
	}
	RETURN_BOOL(found);
}

ZEND_METHOD(PeakCache_Cache, freeze)
{
	bool on = true;
	peakcache_result rc;

	ZEND_PARSE_PARAMETERS_START(0, 1)
		Z_PARAM_OPTIONAL
		Z_PARAM_BOOL(on)
	ZEND_PARSE_PARAMETERS_END();

	if (!peakcache_pool) {
		return;
	}
	rc = peakcache_freeze(peakcache_pool, on);
	if (rc != PEAKCACHE_OK) {
		pc_throw_library("peakcache_freeze", rc);
		RETURN_THROWS();
	}
}

ZEND_METHOD(PeakCache_Cache, isFrozen)
{
	ZEND_PARSE_PARAMETERS_NONE();
	RETURN_BOOL(peakcache_is_frozen(peakcache_pool));
}

/* The status document (peakcache_status_json) as a PHP string; NULL (thrown) on failure. */
static zend_string *pc_status_json(zend_long history)
{
	peakcache_buf *buf = NULL;
	const uint8_t *data;
	size_t len;
	zend_string *out;
	peakcache_result rc;

	if (history < 0) {
		pc_throw_misuse("Argument #1 ($history) must be greater than or equal to 0, " ZEND_LONG_FMT
			" given", history);
		return NULL;
	}
	if (!peakcache_pool) {
		zend_throw_exception_ex(peakcache_exception_ce, 0, "peakcache is disabled in this process");
		return NULL;
	}
	rc = peakcache_status_json(peakcache_pool, (uint64_t)history, &buf);
	if (rc == PEAKCACHE_OK) {
		rc = peakcache_buf_data(buf, &data, &len);
	}
	if (rc != PEAKCACHE_OK) {
		peakcache_buf_free(buf);
		pc_throw_library("peakcache_status_json", rc);
		return NULL;
	}
	out = zend_string_init((const char *)data, len, 0);
	peakcache_buf_free(buf);
	return out;
}

/* Adds "frozen", "host", "now" and "history" of the status document to the array rv. */
static void pc_add_history(zval *rv, zend_long history)
{
	zval doc, *v;
	zend_string *json = pc_status_json(history);
	const char *keys[] = {"frozen", "host", "now", "history"};
	size_t i;

	if (!json) {
		return;
	}
	if (php_json_decode_ex(&doc, ZSTR_VAL(json), ZSTR_LEN(json), PHP_JSON_OBJECT_AS_ARRAY, 64)
		== SUCCESS && Z_TYPE(doc) == IS_ARRAY) {
		for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
			v = zend_hash_str_find(Z_ARRVAL(doc), keys[i], strlen(keys[i]));
			if (v) {
				Z_TRY_ADDREF_P(v);
				add_assoc_zval(rv, keys[i], v);
			}
		}
	}
	zval_ptr_dtor(&doc);
	zend_string_release(json);
}

ZEND_METHOD(PeakCache_Cache, stats)
{
	peakcache_stats st;
	zend_long history = 0;

	ZEND_PARSE_PARAMETERS_START(0, 1)
		Z_PARAM_OPTIONAL
		Z_PARAM_LONG(history)
	ZEND_PARSE_PARAMETERS_END();

	memset(&st, 0, sizeof st);
	if (peakcache_pool) {
		peakcache_result rc = peakcache_cache_stats(peakcache_pool, &st);
		if (rc != PEAKCACHE_OK) {
			pc_throw_library("peakcache_cache_stats", rc);
			RETURN_THROWS();
		}
	}
	array_init_size(return_value, 28);
	add_assoc_bool(return_value, "enabled", peakcache_pool != NULL);
#define PC_STAT(field) add_assoc_long(return_value, #field, \
		st.field > (uint64_t)ZEND_LONG_MAX ? ZEND_LONG_MAX : (zend_long)st.field)
	PC_STAT(lookups);
	PC_STAT(fresh);
	PC_STAT(stale);
	PC_STAT(stale_if_error);
	PC_STAT(miss);
	PC_STAT(wait);
	PC_STAT(pass);
	PC_STAT(wait_timeouts);
	PC_STAT(fills_committed);
	PC_STAT(fills_failed);
	PC_STAT(fills_abandoned);
	PC_STAT(fills_uncacheable);
	PC_STAT(refreshes_started);
	PC_STAT(refreshes_committed);
	PC_STAT(refreshes_failed);
	PC_STAT(refreshes_abandoned);
	PC_STAT(refreshes_uncacheable);
	PC_STAT(inserts);
	PC_STAT(rejected_too_large);
	PC_STAT(evictions);
	PC_STAT(expirations);
	PC_STAT(purges);
	PC_STAT(tag_purges);
	PC_STAT(entries);
	PC_STAT(weight);
	PC_STAT(capacity);
#undef PC_STAT
	if (history > 0 && peakcache_pool) {
		pc_add_history(return_value, history);
		if (EG(exception)) {
			RETURN_THROWS();
		}
	}
}

ZEND_METHOD(PeakCache_Cache, statusJson)
{
	zend_long history = 0;
	zend_string *json;

	ZEND_PARSE_PARAMETERS_START(0, 1)
		Z_PARAM_OPTIONAL
		Z_PARAM_LONG(history)
	ZEND_PARSE_PARAMETERS_END();

	json = pc_status_json(history);
	if (!json) {
		RETURN_THROWS();
	}
	RETURN_STR(json);
}

ZEND_METHOD(PeakCache_Cache, statusPage)
{
	const uint8_t *data;
	size_t len;
	peakcache_result rc;

	ZEND_PARSE_PARAMETERS_NONE();

	rc = peakcache_status_page(&data, &len);
	if (rc != PEAKCACHE_OK) {
		pc_throw_library("peakcache_status_page", rc);
		RETURN_THROWS();
	}
	RETURN_STRINGL((const char *)data, len);
}

/* The pool, or an exception saying snapshots need one. */
static bool pc_check_pool_for(const char *what)
{
	if (!peakcache_pool) {
		zend_throw_exception_ex(peakcache_exception_ce, 0,
			"%s: peakcache is disabled in this process", what);
		return false;
	}
	return true;
}

ZEND_METHOD(PeakCache_Cache, snapshot)
{
	zend_string *path;
	uint64_t entries = 0;
	peakcache_result rc;

	ZEND_PARSE_PARAMETERS_START(1, 1)
		Z_PARAM_PATH_STR(path)
	ZEND_PARSE_PARAMETERS_END();

	if (!pc_check_pool_for("snapshot()")) {
		RETURN_THROWS();
	}
	rc = peakcache_cache_snapshot(peakcache_pool, (const uint8_t *)ZSTR_VAL(path), ZSTR_LEN(path),
		&entries);
	if (rc != PEAKCACHE_OK) {
		pc_throw_library("peakcache_cache_snapshot", rc);
		RETURN_THROWS();
	}
	RETURN_LONG(entries > (uint64_t)ZEND_LONG_MAX ? ZEND_LONG_MAX : (zend_long)entries);
}

ZEND_METHOD(PeakCache_Cache, restore)
{
	zend_string *path;
	bool rollback = false;
	uint64_t restored = 0, skipped = 0;
	peakcache_result rc;

	ZEND_PARSE_PARAMETERS_START(1, 2)
		Z_PARAM_PATH_STR(path)
		Z_PARAM_OPTIONAL
		Z_PARAM_BOOL(rollback)
	ZEND_PARSE_PARAMETERS_END();

	if (!pc_check_pool_for("restore()")) {
		RETURN_THROWS();
	}
	if (rollback) {
		/* frozen first: nothing refreshes the bad copies while they are replaced */
		rc = peakcache_freeze(peakcache_pool, true);
		if (rc == PEAKCACHE_OK) {
			rc = peakcache_clear(peakcache_pool);
		}
		if (rc != PEAKCACHE_OK) {
			pc_throw_library("restore()", rc);
			RETURN_THROWS();
		}
	}
	rc = peakcache_cache_restore(peakcache_pool, (const uint8_t *)ZSTR_VAL(path), ZSTR_LEN(path),
		&restored, &skipped);
	if (rc != PEAKCACHE_OK) {
		pc_throw_library("peakcache_cache_restore", rc);
		RETURN_THROWS();
	}
	RETURN_LONG(restored > (uint64_t)ZEND_LONG_MAX ? ZEND_LONG_MAX : (zend_long)restored);
}

ZEND_METHOD(PeakCache_Cache, runPendingRefreshes)
{
	bool finish = false;

	ZEND_PARSE_PARAMETERS_START(0, 1)
		Z_PARAM_OPTIONAL
		Z_PARAM_BOOL(finish)
	ZEND_PARSE_PARAMETERS_END();

	RETVAL_LONG(pc_run_deferred(finish));
	if (EG(exception)) {
		RETURN_THROWS();
	}
}

ZEND_METHOD(PeakCache_Cache, isEnabled)
{
	ZEND_PARSE_PARAMETERS_NONE();
	RETURN_BOOL(peakcache_pool != NULL);
}

ZEND_METHOD(PeakCache_Cache, region)
{
	ZEND_PARSE_PARAMETERS_NONE();
	if (!peakcache_pool || !pc_pool_shared) {
		RETURN_NULL();
	}
	RETURN_STRING(pc_region);
}
/* }}} */

/* {{{ module lifecycle */
static PHP_GINIT_FUNCTION(peakcache)
{
#if defined(COMPILE_DL_PEAKCACHE) && defined(ZTS)
	ZEND_TSRMLS_CACHE_UPDATE();
#endif
	memset(peakcache_globals, 0, sizeof *peakcache_globals);
}

static PHP_GSHUTDOWN_FUNCTION(peakcache)
{
	pc_classes_free(peakcache_globals->allowed_classes);
	peakcache_globals->allowed_classes = NULL;
}

/* {{{ the pool: made in each process from the settings in effect there */

/* Pool-name bytes kept as they are in a default region's file name. */
#define PC_POOL_NAME_MAX 64

/* The library matches the header this file was built against (checked once, at MINIT). */
static bool pc_library_ok;
/* peakcache_pool was made for this process: at its first request (see pc_resolve_pool). */
static bool pc_pool_resolved;
/* peakcache_pool is the anonymous region made at MINIT, before FPM forked this worker. */
static bool pc_pool_from_minit;
/* Why the configured region is not used, when it is not ("" otherwise). */
static char pc_region_refused[PC_PATH_MAX + 512];
#ifdef ZTS
static MUTEX_T pc_pool_mutex;
#endif

static bool pc_is_cli(void)
{
	return sapi_module.name
		&& (strcmp(sapi_module.name, "cli") == 0 || strcmp(sapi_module.name, "phpdbg") == 0);
}

static bool pc_is_fpm(void)
{
	return sapi_module.name && strcmp(sapi_module.name, "fpm-fcgi") == 0;
}

/* Writes one line to the log (error_log, else the SAPI's: FPM's with catch_workers_output),
 * never to a response: a visitor must not see region paths. */
static void pc_log(const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	zend_vspprintf(&msg, 0, fmt, ap);
	va_end(ap);
	php_log_err_with_severity(msg, LOG_WARNING);
	efree(msg);
}

/* Whether this process is to have a pool at all. */
static bool pc_pool_wanted(void)
{
	if (!pc_library_ok || !PEAKCACHE_G(enable) || (pc_is_cli() && !PEAKCACHE_G(enable_cli))) {
		return false;
	}
	if (PEAKCACHE_G(size) <= 0) {
		pc_log("peakcache: peakcache.size must be positive; peakcache is disabled");
		return false;
	}
	return true;
}

static void pc_config(peakcache_config *cfg)
{
	peakcache_config_default(cfg);
	cfg->capacity_bytes = (uint64_t)PEAKCACHE_G(size);
	cfg->max_object_bytes = PEAKCACHE_G(max_object_size) > 0 ? (uint64_t)PEAKCACHE_G(max_object_size) : 0;
	cfg->shards = PEAKCACHE_G(shards) > 0 && PEAKCACHE_G(shards) <= 65536 ? (uint32_t)PEAKCACHE_G(shards) : 0;
	if (PEAKCACHE_G(lock_timeout) > 0) {
		cfg->lock_timeout_ms = (uint64_t)PEAKCACHE_G(lock_timeout);
	}
	cfg->default_swr_ms = PEAKCACHE_G(default_swr) > 0 ? (uint64_t)PEAKCACHE_G(default_swr) * 1000 : 0;
	cfg->default_sie_ms = PEAKCACHE_G(default_sie) > 0 ? (uint64_t)PEAKCACHE_G(default_sie) * 1000 : 0;
}

static void pc_drop_pool(void)
{
	peakcache_cache_free(peakcache_pool);
	peakcache_pool = NULL;
	pc_pool_shared = false;
	pc_pool_from_minit = false;
	pc_region[0] = '\0';
}

/* This process's own pool (peakcache.shared=0, or the fallback of a refused region). */
static void pc_open_local(void)
{
	peakcache_config cfg;
	peakcache_result rc;

	pc_config(&cfg);
	rc = peakcache_cache_new(&cfg, &peakcache_pool);
	if (rc != PEAKCACHE_OK) {
		char why[256];
		peakcache_last_error(why, sizeof why);
		pc_log("peakcache: the pool could not be created (%s %s); peakcache is disabled",
			peakcache_result_str(rc), why);
		peakcache_pool = NULL;
	}
}

/* The shared region in the file at path ("" an anonymous mapping). False, with the reason
 * logged and kept for phpinfo(), when the library refuses it. */
static bool pc_open_region(const char *path)
{
	peakcache_config cfg;
	peakcache_result rc;
	char why[PC_PATH_MAX + 256];

	pc_config(&cfg);
	cfg.backend = PEAKCACHE_BACKEND_SHARED;
	cfg.shm_path = (const uint8_t *)path;
	cfg.shm_path_len = strlen(path);
	rc = peakcache_cache_new(&cfg, &peakcache_pool);
	if (rc != PEAKCACHE_OK) {
		peakcache_last_error(why, sizeof why);
		snprintf(pc_region_refused, sizeof pc_region_refused, "%s: %s%s%s",
			*path ? path : "anonymous mapping", peakcache_result_str(rc), why[0] ? ": " : "", why);
		pc_log("peakcache: the shared memory region %s cannot be used (%s%s%s); this process "
			"uses a cache of its own instead", *path ? path : "(anonymous mapping)",
			peakcache_result_str(rc), why[0] ? ": " : "", why);
		peakcache_pool = NULL;
		return false;
	}
	pc_pool_shared = true;
	snprintf(pc_region, sizeof pc_region, "%s", *path ? path : "anonymous");
	return true;
}

/* The start and end of this process's argv and environ strings: fields 48 (arg_start) and 51
 * (env_end) of /proc/self/stat, counted after the command name, which may hold spaces. */
static bool pc_args_area(uintptr_t *start, uintptr_t *end)
{
	char buf[4096], *p, *field, *save = NULL;
	ssize_t n;
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC), i;

	if (fd < 0) {
		return false;
	}
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0) {
		return false;
	}
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p) {
		return false;
	}
	*start = *end = 0;
	/* The field after the name is field 3. */
	for (i = 3, field = strtok_r(p + 1, " ", &save); field; i++, field = strtok_r(NULL, " ", &save)) {
		if (i == 48) {
			*start = (uintptr_t)strtoull(field, NULL, 10);
		} else if (i == 51) {
			*end = (uintptr_t)strtoull(field, NULL, 10);
			break;
		}
	}
	return *start != 0 && *end > *start;
}

/* The name of the PHP-FPM pool this worker serves, from the title FPM gives its workers,
 * "php-fpm: pool NAME" (what ps shows), which it writes over the process's argv and environ
 * strings, cut 2 bytes short of their end. *name points into that memory. False, with *why,
 * when the title is not FPM's or may have been cut: the end of a long name could be what tells
 * two pools apart. */
static bool pc_fpm_pool_name(const char **name, size_t *len, const char **why)
{
	static const char prefix[] = "php-fpm: pool ";
	uintptr_t start, end;
	const char *title;
	size_t title_len;

	if (!pc_args_area(&start, &end)) {
		*why = "/proc/self/stat does not say where its process title is";
		return false;
	}
	title = (const char *)start;
	title_len = strnlen(title, end - start);
	if (title_len < sizeof prefix || memcmp(title, prefix, sizeof prefix - 1) != 0) {
		*why = "its process title is not FPM's \"php-fpm: pool NAME\"";
		return false;
	}
	if (title_len + 3 >= end - start) {
		*why = "its process title (\"php-fpm: pool NAME\") is cut short: the name is too long for "
			"the room FPM has for it";
		return false;
	}
	*name = title + sizeof prefix - 1;
	*len = title_len - (sizeof prefix - 1);
	return true;
}

/* A pool name as a file name: kept when made of [A-Za-z0-9._-] alone and at most
 * PC_POOL_NAME_MAX bytes; otherwise each other byte becomes '_', the name is cut there, and its
 * FNV-1a hash is appended, so two names never share one file. */
static void pc_pool_file_name(const char *pool, size_t len, char *out, size_t cap)
{
	uint64_t hash = 0xcbf29ce484222325ULL;
	size_t i, n = 0;
	bool changed = len > PC_POOL_NAME_MAX;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)pool[i];
		hash = (hash ^ c) * 0x100000001b3ULL;
		if (n < PC_POOL_NAME_MAX && n + 1 < cap) {
			bool plain = c < 0x80 && (isalnum(c) || c == '.' || c == '_' || c == '-');
			out[n++] = plain ? (char)c : '_';
			changed = changed || !plain;
		}
	}
	out[n] = '\0';
	if (changed) {
		snprintf(out + n, cap - n, "-%016" PRIx64, hash);
	}
}

/* The region of peakcache.shm_path="" in this process: under PHP-FPM one per pool and user,
 * /dev/shm/peakcache-php-<euid>-<pool>; elsewhere one per user, /dev/shm/peakcache-php-<euid>.
 * The euid is this process's, so under FPM the pool's user (workers switch before their first
 * request). False when an FPM worker cannot learn its pool's name: sharing a region among
 * every pool of one user is exactly what the default must not do. */
static bool pc_default_region(char *path, size_t cap)
{
	unsigned long euid = (unsigned long)geteuid();
	char file_name[PC_POOL_NAME_MAX + 32];
	const char *pool, *why;
	size_t pool_len;

	if (!pc_is_fpm()) {
		snprintf(path, cap, "/dev/shm/peakcache-php-%lu", euid);
		return true;
	}
	if (!pc_fpm_pool_name(&pool, &pool_len, &why)) {
		snprintf(pc_region_refused, sizeof pc_region_refused, "this PHP-FPM worker cannot learn "
			"its pool's name (%s); set php_admin_value[peakcache.shm_path] for the pool", why);
		pc_log("peakcache: %s; this process uses a cache of its own instead", pc_region_refused);
		return false;
	}
	pc_pool_file_name(pool, pool_len, file_name, sizeof file_name);
	snprintf(path, cap, "/dev/shm/peakcache-php-%lu-%s", euid, file_name);
	return true;
}

/* Makes this process's pool from the settings in effect here (php.ini, and under FPM the pool's
 * php_value / php_admin_value, applied in the worker after its user switch): none when
 * disabled; this process's own; or the shared region (peakcache.shared=1), falling back to
 * this process's own, with the reason logged, when the region is refused. An anonymous region
 * made at MINIT is kept when it is still what the settings ask for. */
static void pc_resolve_pool(void)
{
	const char *path = PEAKCACHE_G(shm_path) ? PEAKCACHE_G(shm_path) : "";
	char default_path[PC_PATH_MAX];
	bool anonymous = strcmp(path, "anonymous") == 0;

	pc_region_refused[0] = '\0';
	if (!pc_pool_wanted()) {
		pc_drop_pool();
		return;
	}
	if (pc_pool_from_minit && PEAKCACHE_G(shared) && anonymous) {
		return;
	}
	pc_drop_pool();
	if (!PEAKCACHE_G(shared)) {
		pc_open_local();
		return;
	}
	if (anonymous) {
		path = ""; /* shared only with the processes this one forks from now on */
	} else if (!*path) {
		if (!pc_default_region(default_path, sizeof default_path)) {
			pc_open_local();
			return;
		}
		path = default_path;
	}
	if (!pc_open_region(path)) {
		pc_open_local();
	}
}

/* Once per process, at its first request: under FPM that is in the worker, as the pool's user,
 * so the master (root) never opens a region and two pools never share one by default. */
static void pc_resolve_pool_once(void)
{
#ifdef ZTS
	tsrm_mutex_lock(pc_pool_mutex);
#endif
	if (!pc_pool_resolved) {
		pc_resolve_pool();
		pc_pool_resolved = true;
	}
#ifdef ZTS
	tsrm_mutex_unlock(pc_pool_mutex);
#endif
}

/* Refuses a library built from another header (its structs may differ). */
static bool pc_check_library(void)
{
	char expect[32];

	snprintf(expect, sizeof expect, "%d.%d.", PEAKCACHE_VERSION_MAJOR, PEAKCACHE_VERSION_MINOR);
	if (strncmp(peakcache_version(), expect, strlen(expect)) != 0) {
		php_error_docref(NULL, E_WARNING, "peakcache is disabled: built against peakcache.h %d.%d "
			"but linked with library %s", PEAKCACHE_VERSION_MAJOR, PEAKCACHE_VERSION_MINOR,
			peakcache_version());
		return false;
	}
	return true;
}
/* }}} */

PHP_MINIT_FUNCTION(peakcache)
{
	REGISTER_INI_ENTRIES();
	peakcache_exception_ce = register_class_PeakCache_Exception(spl_ce_RuntimeException);
	peakcache_cache_ce = register_class_PeakCache_Cache();
#ifdef ZTS
	pc_pool_mutex = tsrm_mutex_alloc();
#endif
	pc_library_ok = pc_check_library();
	/* An anonymous mapping is shared only with the processes forked after it is made: under
	 * FPM it must exist in the master, before the workers, whichever pool they serve. */
	if (PEAKCACHE_G(shared) && PEAKCACHE_G(shm_path) && strcmp(PEAKCACHE_G(shm_path), "anonymous") == 0
		&& pc_pool_wanted() && pc_open_region("")) {
		pc_pool_from_minit = true;
	}
	return SUCCESS;
}

PHP_MSHUTDOWN_FUNCTION(peakcache)
{
	pc_drop_pool();
	pc_pool_resolved = false;
#ifdef ZTS
	tsrm_mutex_free(pc_pool_mutex);
#endif
	UNREGISTER_INI_ENTRIES();
	return SUCCESS;
}

PHP_RINIT_FUNCTION(peakcache)
{
#if defined(COMPILE_DL_PEAKCACHE) && defined(ZTS)
	ZEND_TSRMLS_CACHE_UPDATE();
#endif
	PEAKCACHE_G(fills) = NULL;
	PEAKCACHE_G(deferred) = NULL;
	PEAKCACHE_G(shutdown_registered) = false;
	pc_resolve_pool_once();
	return SUCCESS;
}

/* The status page's visitor counts: this request, and whether it ended in a 5xx. The pool's
 * history is sampled here too (once a second by whichever process ends a request first). */
static void pc_count_request(void)
{
	peakcache_host_counts counts;

	if (!peakcache_pool) {
		return;
	}
	memset(&counts, 0, sizeof counts);
	counts.visitor_requests = 1;
	counts.visitor_errors = SG(sapi_headers).http_response_code >= 500;
	(void)peakcache_cache_tick(peakcache_pool, &counts, NULL);
}

/* Gives back whatever this request still holds: fills left by a fatal error or exit() inside
 * $compute, refreshes that never ran. No waiter is left waiting for a request that is gone. */
PHP_RSHUTDOWN_FUNCTION(peakcache)
{
	if (PEAKCACHE_G(fills)) {
		HashTable *fills = PEAKCACHE_G(fills);
		PEAKCACHE_G(fills) = NULL;
		fills->pDestructor = pc_fill_dtor;
		zend_hash_destroy(fills);
		FREE_HASHTABLE(fills);
	}
	if (PEAKCACHE_G(deferred)) {
		HashTable *deferred = PEAKCACHE_G(deferred);
		PEAKCACHE_G(deferred) = NULL;
		zend_hash_destroy(deferred);
		FREE_HASHTABLE(deferred);
	}
	PEAKCACHE_G(shutdown_registered) = false;
	pc_count_request();
	return SUCCESS;
}

PHP_MINFO_FUNCTION(peakcache)
{
	char buf[PC_PATH_MAX + 64];

	php_info_print_table_start();
	php_info_print_table_row(2, "peakcache support", peakcache_pool ? "enabled"
		: !PEAKCACHE_G(enable) ? "disabled (peakcache.enable=0)"
		: pc_is_cli() && !PEAKCACHE_G(enable_cli) ? "disabled (peakcache.enable_cli=0)"
		: !pc_pool_resolved ? "not yet made (at this process's first request)"
		: "disabled (see the log)");
	php_info_print_table_row(2, "Extension version", PHP_PEAKCACHE_VERSION);
	php_info_print_table_row(2, "Library version", peakcache_version());
	if (!peakcache_pool) {
		php_info_print_table_row(2, "Backend", "none");
	} else if (pc_pool_shared) {
		snprintf(buf, sizeof buf, "shared memory region %s", pc_region);
		php_info_print_table_row(2, "Backend", buf);
	} else {
		php_info_print_table_row(2, "Backend", "one pool per process");
	}
	if (pc_region_refused[0]) {
		php_info_print_table_row(2, "Shared region refused", pc_region_refused);
	}
	if (peakcache_pool) {
		peakcache_stats st;
		if (peakcache_cache_stats(peakcache_pool, &st) == PEAKCACHE_OK) {
			snprintf(buf, sizeof buf, "%" PRIu64, st.capacity);
			php_info_print_table_row(2, "Capacity (bytes)", buf);
			snprintf(buf, sizeof buf, "%" PRIu64, peakcache_cache_max_object_bytes(peakcache_pool));
			php_info_print_table_row(2, "Object limit (bytes)", buf);
			snprintf(buf, sizeof buf, "%" PRIu64, st.entries);
			php_info_print_table_row(2, "Entries", buf);
		}
	}
	php_info_print_table_end();
	DISPLAY_INI_ENTRIES();
}

static const zend_module_dep peakcache_deps[] = {
	ZEND_MOD_REQUIRED("spl")
	ZEND_MOD_REQUIRED("standard")
	ZEND_MOD_END
};

zend_module_entry peakcache_module_entry = {
	STANDARD_MODULE_HEADER_EX,
	NULL,
	peakcache_deps,
	"peakcache",
	NULL,
	PHP_MINIT(peakcache),
	PHP_MSHUTDOWN(peakcache),
	PHP_RINIT(peakcache),
	PHP_RSHUTDOWN(peakcache),
	PHP_MINFO(peakcache),
	PHP_PEAKCACHE_VERSION,
	PHP_MODULE_GLOBALS(peakcache),
	PHP_GINIT(peakcache),
	PHP_GSHUTDOWN(peakcache),
	NULL,
	STANDARD_MODULE_PROPERTIES_EX
};

#ifdef COMPILE_DL_PEAKCACHE
#ifdef ZTS
ZEND_TSRMLS_CACHE_DEFINE()
#endif
ZEND_GET_MODULE(peakcache)
#endif
/* }}} */
