#!/bin/bash
# Throwaway single-node Ceph (1 mon, 1 memstore OSD, no mgr, auth none) + RGW S3 on 127.0.0.1.
# usage: start-rgw.sh DIR [S3_PORT] [MON_PORT]   -> writes DIR/{mon,osd,rgw}.pid; keys RGWKEY/RGWSECRET
# The OSD keeps every object in memory, at most RIDELAKE_RGW_MEMSTORE_BYTES (default 2 GiB).
# stop:  stop-rgw.sh DIR
set -euo pipefail
D=${1:?dir}; S3PORT=${2:-17480}; MONPORT=${3:-16789}
rm -rf "$D"; mkdir -p "$D"/{mon,osd0,run,log,rgw}
FSID=$(uuidgen)
cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = 127.0.0.1:$MONPORT
mon initial members = a
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
osd objectstore = memstore
memstore device bytes = ${RIDELAKE_RGW_MEMSTORE_BYTES:-2147483648}
osd crush chooseleaf type = 0
mon data = $D/mon
osd data = $D/osd\$id
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$S3PORT
rgw data = $D/rgw
CONF
C="ceph -c $D/ceph.conf"
ceph-authtool --create-keyring "$D/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --add a 127.0.0.1:$MONPORT --fsid "$FSID" "$D/monmap" >/dev/null
ceph-mon -c "$D/ceph.conf" --mkfs -i a --monmap "$D/monmap" --keyring "$D/mon.keyring"
ceph-mon -c "$D/ceph.conf" -i a -f >"$D/log/mon.out" 2>&1 & echo $! >"$D/mon.pid"
timeout 30 bash -c "until $C -s >/dev/null 2>&1; do sleep 0.5; done"
OSD=$($C osd create)
ceph-osd -c "$D/ceph.conf" -i "$OSD" --mkfs >/dev/null 2>&1
$C osd crush add-bucket localhost host >/dev/null 2>&1
$C osd crush move localhost root=default >/dev/null 2>&1
$C osd crush add "osd.$OSD" 1.0 host=localhost >/dev/null 2>&1
ceph-osd -c "$D/ceph.conf" -i "$OSD" -f >"$D/log/osd.out" 2>&1 & echo $! >"$D/osd.pid"
timeout 60 bash -c "until $C osd stat 2>/dev/null | grep -q '1 up'; do sleep 0.5; done"
radosgw -c "$D/ceph.conf" -n client.rgw -f >"$D/log/rgw.out" 2>&1 & echo $! >"$D/rgw.pid"
timeout 90 bash -c "until curl -sf http://127.0.0.1:$S3PORT/ >/dev/null; do sleep 0.5; done"
radosgw-admin -c "$D/ceph.conf" -n client.rgw user create --uid=tester --display-name=tester \
  --access-key=RGWKEY --secret-key=RGWSECRET >/dev/null 2>&1
echo "RGW ready on http://127.0.0.1:$S3PORT"
