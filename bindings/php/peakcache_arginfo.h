/* This is a generated file, edit the .stub.php file instead.
 * Stub hash: 4d26aa17f1bbc4e5a81977475b23dc59c3e40062 */

ZEND_BEGIN_ARG_INFO_EX(arginfo_class_PeakCache_Cache___construct, 0, 0, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_get, 0, 1, IS_MIXED, 0)
	ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, default, IS_MIXED, 0, "null")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_set, 0, 2, _IS_BOOL, 0)
	ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
	ZEND_ARG_TYPE_INFO(0, value, IS_MIXED, 0)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, ttl, IS_LONG, 1, "null")
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, tags, IS_ARRAY, 0, "[]")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_delete, 0, 1, _IS_BOOL, 0)
	ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
ZEND_END_ARG_INFO()

#define arginfo_class_PeakCache_Cache_has arginfo_class_PeakCache_Cache_delete

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_clear, 0, 0, _IS_BOOL, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_getMultiple, 0, 1, IS_ARRAY, 0)
	ZEND_ARG_OBJ_TYPE_MASK(0, keys, Traversable, MAY_BE_ARRAY, NULL)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, default, IS_MIXED, 0, "null")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_setMultiple, 0, 1, _IS_BOOL, 0)
	ZEND_ARG_OBJ_TYPE_MASK(0, values, Traversable, MAY_BE_ARRAY, NULL)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, ttl, IS_LONG, 1, "null")
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, tags, IS_ARRAY, 0, "[]")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_deleteMultiple, 0, 1, _IS_BOOL, 0)
	ZEND_ARG_OBJ_TYPE_MASK(0, keys, Traversable, MAY_BE_ARRAY, NULL)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_remember, 0, 3, IS_MIXED, 0)
	ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
	ZEND_ARG_TYPE_INFO(0, compute, IS_CALLABLE, 0)
	ZEND_ARG_TYPE_INFO(0, ttl, IS_LONG, 0)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, swr, IS_LONG, 1, "null")
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, sie, IS_LONG, 1, "null")
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, tags, IS_ARRAY, 0, "[]")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_purgeTag, 0, 1, IS_VOID, 0)
	ZEND_ARG_TYPE_INFO(0, tag, IS_STRING, 0)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, soft, _IS_BOOL, 0, "false")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_purge, 0, 1, _IS_BOOL, 0)
	ZEND_ARG_TYPE_INFO(0, key, IS_STRING, 0)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, soft, _IS_BOOL, 0, "false")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_freeze, 0, 0, IS_VOID, 0)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, on, _IS_BOOL, 0, "true")
ZEND_END_ARG_INFO()

#define arginfo_class_PeakCache_Cache_isFrozen arginfo_class_PeakCache_Cache_clear

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_stats, 0, 0, IS_ARRAY, 0)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, history, IS_LONG, 0, "0")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_statusJson, 0, 0, IS_STRING, 0)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, history, IS_LONG, 0, "0")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_statusPage, 0, 0, IS_STRING, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_snapshot, 0, 1, IS_LONG, 0)
	ZEND_ARG_TYPE_INFO(0, path, IS_STRING, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_restore, 0, 1, IS_LONG, 0)
	ZEND_ARG_TYPE_INFO(0, path, IS_STRING, 0)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, rollback, _IS_BOOL, 0, "false")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_runPendingRefreshes, 0, 0, IS_LONG, 0)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, finishResponse, _IS_BOOL, 0, "false")
ZEND_END_ARG_INFO()

#define arginfo_class_PeakCache_Cache_isEnabled arginfo_class_PeakCache_Cache_clear

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_class_PeakCache_Cache_region, 0, 0, IS_STRING, 1)
ZEND_END_ARG_INFO()


ZEND_METHOD(PeakCache_Cache, __construct);
ZEND_METHOD(PeakCache_Cache, get);
ZEND_METHOD(PeakCache_Cache, set);
ZEND_METHOD(PeakCache_Cache, delete);
ZEND_METHOD(PeakCache_Cache, has);
ZEND_METHOD(PeakCache_Cache, clear);
ZEND_METHOD(PeakCache_Cache, getMultiple);
ZEND_METHOD(PeakCache_Cache, setMultiple);
ZEND_METHOD(PeakCache_Cache, deleteMultiple);
ZEND_METHOD(PeakCache_Cache, remember);
ZEND_METHOD(PeakCache_Cache, purgeTag);
ZEND_METHOD(PeakCache_Cache, purge);
ZEND_METHOD(PeakCache_Cache, freeze);
ZEND_METHOD(PeakCache_Cache, isFrozen);
ZEND_METHOD(PeakCache_Cache, stats);
ZEND_METHOD(PeakCache_Cache, statusJson);
ZEND_METHOD(PeakCache_Cache, statusPage);
ZEND_METHOD(PeakCache_Cache, snapshot);
ZEND_METHOD(PeakCache_Cache, restore);
ZEND_METHOD(PeakCache_Cache, runPendingRefreshes);
ZEND_METHOD(PeakCache_Cache, isEnabled);
ZEND_METHOD(PeakCache_Cache, region);


static const zend_function_entry class_PeakCache_Exception_methods[] = {
	ZEND_FE_END
};


static const zend_function_entry class_PeakCache_Cache_methods[] = {
	ZEND_ME(PeakCache_Cache, __construct, arginfo_class_PeakCache_Cache___construct, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, get, arginfo_class_PeakCache_Cache_get, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, set, arginfo_class_PeakCache_Cache_set, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, delete, arginfo_class_PeakCache_Cache_delete, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, has, arginfo_class_PeakCache_Cache_has, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, clear, arginfo_class_PeakCache_Cache_clear, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, getMultiple, arginfo_class_PeakCache_Cache_getMultiple, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, setMultiple, arginfo_class_PeakCache_Cache_setMultiple, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, deleteMultiple, arginfo_class_PeakCache_Cache_deleteMultiple, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, remember, arginfo_class_PeakCache_Cache_remember, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, purgeTag, arginfo_class_PeakCache_Cache_purgeTag, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, purge, arginfo_class_PeakCache_Cache_purge, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, freeze, arginfo_class_PeakCache_Cache_freeze, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, isFrozen, arginfo_class_PeakCache_Cache_isFrozen, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, stats, arginfo_class_PeakCache_Cache_stats, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, statusJson, arginfo_class_PeakCache_Cache_statusJson, ZEND_ACC_PUBLIC|ZEND_ACC_STATIC)
	ZEND_ME(PeakCache_Cache, statusPage, arginfo_class_PeakCache_Cache_statusPage, ZEND_ACC_PUBLIC|ZEND_ACC_STATIC)
	ZEND_ME(PeakCache_Cache, snapshot, arginfo_class_PeakCache_Cache_snapshot, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, restore, arginfo_class_PeakCache_Cache_restore, ZEND_ACC_PUBLIC)
	ZEND_ME(PeakCache_Cache, runPendingRefreshes, arginfo_class_PeakCache_Cache_runPendingRefreshes, ZEND_ACC_PUBLIC|ZEND_ACC_STATIC)
	ZEND_ME(PeakCache_Cache, isEnabled, arginfo_class_PeakCache_Cache_isEnabled, ZEND_ACC_PUBLIC|ZEND_ACC_STATIC)
	ZEND_ME(PeakCache_Cache, region, arginfo_class_PeakCache_Cache_region, ZEND_ACC_PUBLIC|ZEND_ACC_STATIC)
	ZEND_FE_END
};

static zend_class_entry *register_class_PeakCache_Exception(zend_class_entry *class_entry_RuntimeException)
{
	zend_class_entry ce, *class_entry;

	INIT_NS_CLASS_ENTRY(ce, "PeakCache", "Exception", class_PeakCache_Exception_methods);
	class_entry = zend_register_internal_class_ex(&ce, class_entry_RuntimeException);

	return class_entry;
}

static zend_class_entry *register_class_PeakCache_Cache(void)
{
	zend_class_entry ce, *class_entry;

	INIT_NS_CLASS_ENTRY(ce, "PeakCache", "Cache", class_PeakCache_Cache_methods);
	class_entry = zend_register_internal_class_ex(&ce, NULL);
	class_entry->ce_flags |= ZEND_ACC_FINAL|ZEND_ACC_NO_DYNAMIC_PROPERTIES|ZEND_ACC_NOT_SERIALIZABLE;

	return class_entry;
}
