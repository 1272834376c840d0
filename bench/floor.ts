// Loads bench/floor.bpf.c (empty programs on the collector's hooks), says
// "attached", and holds them until SIGTERM: the benchmark's floor row.
import { BpfObject } from '../src/bpf/native';
import { Cgroup2 } from '../src/runtime';
import { findHostTlsLibraries } from '../src/plugins/httpflow/tls/discovery';

// FLOOR_HOOKS (a comma-separated list of these sets) chooses which, to see
// what each set costs. By default: the collector's, whose UDP send peers come
// from its egress packet program (address-sends is netflow's fallback).
const SETS = ['state', 'bytes', 'packets', 'address-sends', 'address-receives', 'tls'];
const COLLECTORS = SETS.filter((s) => s !== 'address-sends');
const wanted = (process.env.FLOOR_HOOKS ?? COLLECTORS.join(',')).split(',').filter(Boolean);
for (const s of wanted) {
  if (!SETS.includes(s)) {
    console.error(`FLOOR_HOOKS: unknown set ${JSON.stringify(s)} (sets: ${SETS.join(', ')})`);
    process.exit(2);
  }
}
const on = (set: string) => wanted.includes(set);

const obj = BpfObject.open('floor');
obj.load();
const root = new Cgroup2().path();
// tp_btf programs: their tracepoint is named in the object
if (on('state')) for (const prog of ['floor_state', 'floor_destroy', 'floor_retransmit']) obj.attachTrace(prog);
if (on('bytes')) for (const prog of ['floor_send', 'floor_recv']) obj.attachTrace(prog);
if (on('packets')) for (const prog of ['floor_egress', 'floor_ingress']) obj.attachCgroup(prog, root);
if (on('address-sends')) for (const prog of ['floor_sendmsg4', 'floor_sendmsg6']) obj.attachCgroup(prog, root);
if (on('address-receives')) for (const prog of ['floor_recvmsg4', 'floor_recvmsg6']) obj.attachCgroup(prog, root);
// httpflow's TLS probes on the host's libssl (the HTTPS row's wrk and nginx use it)
for (const lib of on('tls') ? findHostTlsLibraries() : []) {
  for (const func of ['SSL_write', 'SSL_read', 'SSL_write_ex', 'SSL_read_ex']) {
    obj.attachUprobe('floor_ssl_return', { binary: lib.path, func, retprobe: true });
    obj.attachUprobe('floor_ssl_enter', { binary: lib.path, func });
  }
}
process.stdout.write('attached\n');
process.on('SIGTERM', () => {
  obj.close();
  process.exit(0);
});
setInterval(() => {}, 1 << 30);
