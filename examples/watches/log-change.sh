#!/bin/sh
# A watch handler: appends what it was given to $WATCH_LOG (default /tmp/legate-watches.log).
# The result's JSON arrives on stdin, its index in CONSUL_INDEX. One write per call, so the
# entries of watches that fire together do not interleave.
log=${WATCH_LOG:-/tmp/legate-watches.log}
input=$(cat)
printf '== %s at index %s\n%s\n' "$1" "$CONSUL_INDEX" "$input" >> "$log"
