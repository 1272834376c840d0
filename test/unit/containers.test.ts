import assert from 'node:assert/strict';
import { test } from 'node:test';
import { containerIdFromCgroup, containerIdFromProcCgroup } from '../../src/enrich/containers';

const ID = '3f1c2b8e9d0a4c5b6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5';
const OTHER = 'a'.repeat(64);

test('container id: the layouts of docker, containerd, cri-o and podman', () => {
  const cases: [string, string | undefined][] = [
    [`/docker/${ID}`, ID], // docker, cgroupfs driver
    [`/system.slice/docker-${ID}.scope`, ID], // docker, systemd driver
    [`/system.slice/containerd-${ID}.scope`, ID],
    [`/default/${ID}`, ID], // containerd (ctr), cgroupfs: namespace/id
    [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1e2a3b_4c5d_6e7f_8091_a2b3c4d5e6f7.slice/cri-containerd-${ID}.scope`, ID],
    [`/kubepods/besteffort/pod6f1e2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7/${ID}`, ID],
    [`/kubepods.slice/kubepods-pod6f1e2a3b_4c5d_6e7f_8091_a2b3c4d5e6f7.slice/crio-${ID}.scope`, ID],
    [`/machine.slice/libpod-${ID}.scope/container`, ID], // podman, its own cgroup below
    [`/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope`, ID], // rootless podman
    [`/system.slice/nerdctl-${ID}.scope`, ID],
    [`/docker/${OTHER}/docker/${ID}`, ID], // a container in a container: the inner one
    [`/machine.slice/libpod-conmon-${ID}.scope`, undefined], // the runtime's monitor, not the container
    [`/kubepods.slice/kubepods-pod6f1e2a3b_4c5d_6e7f_8091_a2b3c4d5e6f7.slice/crio-conmon-${ID}.scope`, undefined],
    ['/user.slice/user-0.slice/session-1.scope', undefined],
    ['/system.slice/ssh.service', undefined],
    ['/', undefined],
    [`/docker/${ID.slice(1)}`, undefined], // 63 digits
    [`/system.slice/docker-${ID.toUpperCase()}.scope`, undefined],
  ];
  for (const [p, want] of cases) assert.equal(containerIdFromCgroup(p), want, p);
});

test('container id from /proc/PID/cgroup: cgroup v2, v1, hybrid', () => {
  assert.equal(containerIdFromProcCgroup(`0::/system.slice/containerd-${ID}.scope\n`), ID);
  assert.equal(containerIdFromProcCgroup('0::/user.slice/user-0.slice/session-3.scope\n'), undefined);
  // cgroup v1 only: any hierarchy that names it
  assert.equal(containerIdFromProcCgroup(`12:pids:/docker/${ID}\n11:memory:/docker/${ID}\n1:name=systemd:/docker/${ID}\n`), ID);
  // hybrid: the v2 line names none (systemd's unified hierarchy), a v1 hierarchy does
  assert.equal(containerIdFromProcCgroup(`12:pids:/docker/${ID}\n1:name=systemd:/docker/${ID}\n0::/\n`), ID);
  assert.equal(containerIdFromProcCgroup('12:pids:/user.slice\n0::/user.slice/user-0.slice/session-3.scope\n'), undefined);
  assert.equal(containerIdFromProcCgroup(''), undefined);
});
