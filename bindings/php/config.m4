dnl config.m4 for the peakcache extension.
dnl
dnl   phpize && ./configure --enable-peakcache [--with-peakcache-dir=DIR] && make
dnl
dnl DIR holds include/peakcache.h and target/release/libpeakcache.a (`make ffi` in the
dnl repository); default: the repository this file sits in (../.. from it), or the value of
dnl PEAKCACHE_DIR; without one, pkg-config's peakcache-static (libpeakcache-dev). The static library is linked into peakcache.so with its symbols kept
dnl private (-Wl,--exclude-libs,ALL), so the extension exports only get_module.

PHP_ARG_ENABLE([peakcache],
  [whether to enable peakcache support],
  [AS_HELP_STRING([--enable-peakcache], [Enable peakcache support])],
  [no])

PHP_ARG_WITH([peakcache-dir],
  [for the peakcache repository],
  [AS_HELP_STRING([--with-peakcache-dir=DIR], [peakcache repository (include/peakcache.h, target/release/libpeakcache.a)])],
  [no],
  [no])

if test "$PHP_PEAKCACHE" != "no"; then
  AC_MSG_CHECKING([for peakcache.h and libpeakcache.a])
  PEAKCACHE_ROOT=""
  for dir in "$PHP_PEAKCACHE_DIR" "$PEAKCACHE_DIR" "$ext_srcdir/../.." "$abs_srcdir/../.."; do
    if test -n "$dir" && test "$dir" != "no" && test -r "$dir/include/peakcache.h" && test -r "$dir/target/release/libpeakcache.a"; then
      PEAKCACHE_ROOT=`cd "$dir" && pwd`
      break
    fi
  done
  if test -n "$PEAKCACHE_ROOT"; then
    AC_MSG_RESULT([$PEAKCACHE_ROOT])
    PHP_ADD_INCLUDE([$PEAKCACHE_ROOT/include])
    dnl The archive by path (not -lpeakcache, which would pick libpeakcache.so next to it), then
    dnl what Rust's std needs from the system.
    PEAKCACHE_LIBS="$PEAKCACHE_ROOT/target/release/libpeakcache.a -lpthread -ldl -lm -lrt -lutil"
  else
    AC_MSG_RESULT([no tree, asking pkg-config])
    dnl An installed libpeakcache-dev (pecl install from a release tarball): peakcache-static.pc
    dnl gives the archive by path too.
    PKG_CHECK_MODULES([PEAKCACHE], [peakcache-static >= 0.2], [],
      [AC_MSG_ERROR([peakcache not found: install libpeakcache-dev (pkg-config peakcache-static), or run `make ffi` in the repository and pass --with-peakcache-dir=DIR])])
    PHP_EVAL_INCLINE([$PEAKCACHE_CFLAGS])
  fi
  PEAKCACHE_SHARED_LIBADD="$PEAKCACHE_LIBS -Wl,--exclude-libs,ALL"
  PHP_SUBST(PEAKCACHE_SHARED_LIBADD)

  AC_DEFINE(HAVE_PEAKCACHE, 1, [ Have peakcache support ])
  PHP_NEW_EXTENSION(peakcache, peakcache.c, $ext_shared,, -DZEND_ENABLE_STATIC_TSRMLS_CACHE=1)
  PHP_ADD_EXTENSION_DEP(peakcache, spl)
fi
