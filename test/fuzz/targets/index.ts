// Every fuzz target, in the order they run.
import type { FuzzTarget } from '../harness';
import { configTarget } from './config';
import { dnsTarget } from './dns';
import { httpTarget } from './http';
import { k8sTarget } from './k8s';
import { lineTarget } from './lineprotocol';
import { seriesTarget } from './series';

export const TARGETS: FuzzTarget<any>[] = [dnsTarget, httpTarget, seriesTarget, lineTarget, configTarget, k8sTarget];
