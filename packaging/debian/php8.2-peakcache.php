mod target/php-ext/modules/peakcache.so
mod debian/peakcache.ini
