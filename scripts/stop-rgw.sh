#!/bin/bash
# Stops what start-rgw.sh started in DIR: rgw, then osd, then mon.
D=${1:?dir}
for p in rgw osd mon; do
  [ -f "$D/$p.pid" ] && kill "$(cat "$D/$p.pid")" 2>/dev/null
done
for p in rgw osd mon; do
  [ -f "$D/$p.pid" ] && timeout 20 bash -c "while kill -0 $(cat "$D/$p.pid") 2>/dev/null; do sleep 0.2; done"
done
exit 0
