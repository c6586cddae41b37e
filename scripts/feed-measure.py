#!/usr/bin/env python3
"""Feeds against polling (issue 17), measured: on a bindfs mount of DIRS directories of FILES
files each, two daemons polling every 5 s, one of them with a [[feed]] running
`fakenotify-ctl feed` on the backing directory (safety interval 10 min), each serving a
preloaded `inotifywait -m -r -e create,modify` (IN_MODIFY: every poll statx-es every entry).
Files are created at random in the tree about every SPACING seconds for SECONDS; prints each
daemon's creation-to-event latency (p50, p99, max) and statx calls per minute from its status.

    python3 scripts/feed-measure.py [--bin target/release] DIRS FILES SECONDS [SPACING]

Runs as root (bindfs, FUSE); works under /tmp/fakenotify-feed-measure. Needs bindfs and
inotify-tools, and a build of fakenotifyd, fakenotify-ctl and libfakenotify.so in --bin.
"""
import argparse
import json, os, random, subprocess, sys, threading, time
parser = argparse.ArgumentParser(description='feeds against polling: latency and statx calls')
parser.add_argument('--bin', default='target/release', help='where the built binaries are')
parser.add_argument('dirs', type=int)
parser.add_argument('files', type=int)
parser.add_argument('seconds', type=float)
parser.add_argument('spacing', type=float, nargs='?', default=1.0)
args = parser.parse_args()
W = os.path.abspath(args.bin)
DIRS, FILES, WINDOW, SPACING = args.dirs, args.files, args.seconds, args.spacing
root = '/tmp/fakenotify-feed-measure'
os.makedirs(root, exist_ok=True)
b, m = root + '/b', root + '/m'
subprocess.run(['fusermount', '-u', m], stderr=subprocess.DEVNULL)
subprocess.run(['rm', '-rf', b]); os.makedirs(b); os.makedirs(m, exist_ok=True)
for d in range(DIRS):
    p = f'{b}/d{d}'; os.mkdir(p)
    for f in range(FILES):
        open(f'{p}/f{f}', 'w').close()
subprocess.run(['bindfs', b, m], check=True)
procs = []
def daemon(name, feed):
    cfg = f'{root}/{name}.toml'
    text = '[daemon]\ndefault_poll_interval = "5s"\n'
    if feed:
        text += ('[[feed]]\ncommand = ["%s/fakenotify-ctl", "feed", "--heartbeat", "1s", "%s"]\n'
                 'remote = "%s"\nlocal = "%s"\nsafety_interval = "10m"\n' % (W, b, b, m))
    open(cfg, 'w').write(text)
    sock = f'{root}/{name}.sock'
    if os.path.exists(sock): os.unlink(sock)
    p = subprocess.Popen([W + '/fakenotifyd', 'start', '--config', cfg, '--socket', sock],
                         stderr=open(f'{root}/{name}.log', 'w'))
    procs.append(p)
    for _ in range(200):
        if os.path.exists(sock): break
        time.sleep(0.05)
    return sock
socks = {'poll': daemon('poll', False), 'feed': daemon('feed', True)}
time.sleep(2)
seen = {k: {} for k in socks}
ready = {k: threading.Event() for k in socks}
def client(name, sock):
    env = dict(os.environ, LD_PRELOAD=W + '/libfakenotify.so', FAKENOTIFY_SOCKET=sock)
    p = subprocess.Popen(['inotifywait', '-m', '-r', '-e', 'create,modify', '--format', '%e %f', m],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    def err():
        for line in p.stderr:
            if 'Watches established' in line: ready[name].set()
    threading.Thread(target=err, daemon=True).start()
    for line in p.stdout:
        ev, _, f = line.strip().partition(' ')
        if 'CREATE' in ev and f not in seen[name]:
            seen[name][f] = time.monotonic()
for k, s in socks.items():
    threading.Thread(target=client, args=(k, s), daemon=True).start()
for e in ready.values(): e.wait(120)
def statx(sock):
    out = subprocess.run([W + '/fakenotify-ctl', 'status', '--json', '--socket', sock],
                         capture_output=True, text=True).stdout
    return json.loads(out)['syscalls_statx'], json.loads(out)
time.sleep(6)
start = {k: statx(s)[0] for k, s in socks.items()}
t0 = time.monotonic()
made = {}
n = 0
while time.monotonic() - t0 < WINDOW:
    time.sleep(random.uniform(0.5, 1.5) * SPACING)
    name = f'new{n}'; n += 1
    made[name] = time.monotonic()
    open(f'{b}/d{random.randrange(DIRS)}/{name}', 'w').write('x')
elapsed = time.monotonic() - t0
end = {k: statx(s) for k, s in socks.items()}
time.sleep(6)
for k in socks:
    lat = sorted(seen[k].get(f, float('inf')) - t for f, t in made.items())
    missing = sum(1 for x in lat if x == float('inf'))
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    per_min = (end[k][0] - start[k]) * 60 / elapsed
    print(f'{k}: entries {DIRS*FILES}, {len(made)} creates over {elapsed:.0f}s: latency p50 {pct(0.5)*1000:.0f} ms, '
          f'p99 {pct(0.99)*1000:.0f} ms, max {lat[-1]*1000:.0f} ms, missing {missing}; statx/min {per_min:.0f}')
    if k == 'feed':
        print('  feed status:', {x: end[k][1]['feeds'][0][x] for x in ('lines', 'bad_lines', 'polls_caused', 'long_interval', 'healthy')})
for p in procs: p.terminate()
for p in procs: p.wait()
subprocess.run(['fusermount', '-u', m])
