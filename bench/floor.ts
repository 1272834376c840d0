// Loads bench/floor.bpf.c (empty programs on the collector's hooks), says
// "attached", and holds them until SIGTERM: the benchmark's floor row.
import { BpfObject } from '../src/bpf/native';
import { Cgroup2 } from '../src/runtime';
import { findHostTlsLibraries } from '../src/plugins/httpflow/tls/discovery';

const obj = BpfObject.open('floor');
obj.load();
const root = new Cgroup2().path();
// tp_btf programs: their tracepoint is named in the object
for (const prog of ['floor_state', 'floor_destroy', 'floor_retransmit', 'floor_send', 'floor_recv']) obj.attachTrace(prog);
for (const prog of ['floor_egress', 'floor_ingress', 'floor_sendmsg4', 'floor_recvmsg4', 'floor_sendmsg6', 'floor_recvmsg6']) {
  obj.attachCgroup(prog, root);
}
// httpflow's TLS probes on the host's libssl (the HTTPS row's wrk and nginx use it)
for (const lib of findHostTlsLibraries()) {
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
