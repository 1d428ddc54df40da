# Helpers shared by the PHP-FPM end-to-end scripts (sourced, not run). They count checks in
# $passed / $failed and leave the servers' pids ($fpm_pid, $nginx_pid) to the caller.

stop() { # stop PID: TERM, then KILL after 5 s
    local pid="$1" i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

check() { # check NAME CONDITION-RESULT(0/1) DETAIL
    if [ "$2" = 0 ]; then
        passed=$((passed + 1)); printf 'ok   %s (%s)\n' "$1" "$3"
    else
        failed=$((failed + 1)); printf 'FAIL %s (%s)\n' "$1" "$3"
    fi
}

free_port() { # a TCP port free on loopback now
    php -n -r '$s = stream_socket_server("tcp://127.0.0.1:0"); echo explode(":", stream_socket_get_name($s, false))[1];'
}

wait_curls() { # wait for the background curls only (not the servers)
    local pid
    for pid in $(jobs -p); do
        [ "$pid" = "${fpm_pid:-}" ] || [ "$pid" = "${nginx_pid:-}" ] || wait "$pid"
    done
}

nginx_conf() { # nginx_conf DIR PORT LOCATIONS: a loopback server with the given location blocks
    local dir="$1" port="$2" locations="$3" user=""
    [ "$(id -u)" = 0 ] && user="user root;"
    mkdir -p "$dir/nginx"
    cat >"$dir/nginx.conf" <<CONF
$user
worker_processes 1;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir/nginx/body;
    fastcgi_temp_path $dir/nginx/fastcgi;
    proxy_temp_path $dir/nginx/proxy;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    server {
        listen 127.0.0.1:$port;
$locations
    }
}
CONF
}
