// Watches each path given with Node's fs.watch (libuv's inotify) and prints one line per event:
// READY once the watches are set, then `<rename|change> <filename>`. Used by the end-to-end tests
// and handy by hand: LD_PRELOAD=libfakenotify.so node watch.js /mnt/nfs/media
'use strict';
const fs = require('fs');

const paths = process.argv.slice(2);
if (paths.length === 0) {
  console.error('usage: node watch.js PATH...');
  process.exit(2);
}
for (const path of paths) {
  const watcher = fs.watch(path, (eventType, filename) => {
    process.stdout.write(`${eventType} ${filename ?? '-'}\n`);
  });
  watcher.on('error', (error) => {
    console.log(`ERROR ${path} ${error.code}`);
    process.exit(1);
  });
}
console.log('READY');
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
