// Loads bench/floor.bpf.c (empty programs on the collector's hooks), says
// "attached", and holds them until SIGTERM: the benchmark's floor row.
import { BpfObject } from '../src/bpf/native';
import { Cgroup2 } from '../src/runtime';

const obj = BpfObject.open('floor');
obj.load();
const root = new Cgroup2().path();
for (const [prog, tp] of [
  ['floor_state', 'inet_sock_set_state'],
  ['floor_destroy', 'tcp_destroy_sock'],
  ['floor_retransmit', 'tcp_retransmit_skb'],
  ['floor_send', 'sock_send_length'],
  ['floor_recv', 'sock_recv_length'],
]) {
  obj.attachRawTracepoint(prog, tp);
}
for (const prog of ['floor_egress_a', 'floor_egress_b', 'floor_ingress_a', 'floor_ingress_b', 'floor_sendmsg4', 'floor_recvmsg4', 'floor_sendmsg6', 'floor_recvmsg6']) {
  obj.attachCgroup(prog, root);
}
process.stdout.write('attached\n');
process.on('SIGTERM', () => {
  obj.close();
  process.exit(0);
});
setInterval(() => {}, 1 << 30);
