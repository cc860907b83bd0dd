import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';

type Test = { teardown(fn: () => unknown): void };

/** An SRV record's target as a test writes it. */
export interface SrvTarget {
  target: string;
  port: number;
  priority?: number;
  weight?: number;
}

/**
 * A name server on a loopback UDP port, answering from the records a test gives it: SRV, A and
 * AAAA, NXDOMAIN for any other name (so a lookup it does not know fails at once, never waits on
 * the outside world). Our server reaches it with --dns-servers, Prosody through libunbound's
 * `forward`, so federation is tested on names rather than addresses.
 */
export class TestDns {
  private readonly records = new Map<string, dnsPacket.Answer[]>();
  /** Questions asked, as "TYPE name", in order: what a test can check was looked up. */
  readonly asked: string[] = [];

  private constructor(private readonly socket: dgram.Socket, readonly port: number) {
    socket.on('message', (message, peer) => this.answer(message, peer));
  }

  static async start(t: Test): Promise<TestDns> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => resolve());
    });
    t.teardown(() => new Promise<void>((resolve) => socket.close(() => resolve())));
    return new TestDns(socket, socket.address().port);
  }

  /** "127.0.0.1:port", for --dns-servers. */
  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  a(name: string, address: string): this {
    return this.add({ type: address.includes(':') ? 'AAAA' : 'A', name, ttl: 5, data: address } as dnsPacket.Answer);
  }

  /** SRV records of `service.name` (e.g. "_xmpp-server._tcp.example.test"); a target of "." says the service is not offered. */
  srv(name: string, ...targets: SrvTarget[]): this {
    for (const t of targets) this.add({ type: 'SRV', name, ttl: 5, data: { target: t.target, port: t.port, priority: t.priority ?? 0, weight: t.weight ?? 5 } });
    return this;
  }

  private add(answer: dnsPacket.Answer): this {
    const key = `${answer.type} ${answer.name.toLowerCase()}`;
    this.records.set(key, [...(this.records.get(key) ?? []), answer]);
    return this;
  }

  private answer(message: Buffer, peer: dgram.RemoteInfo): void {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (!question) return;
    const key = `${question.type} ${question.name.toLowerCase()}`;
    this.asked.push(key);
    const answers = this.records.get(key) ?? [];
    const known = [...this.records.keys()].some((k) => k.endsWith(` ${question.name.toLowerCase()}`));
    const reply = dnsPacket.encode({
      id: query.id,
      type: 'response',
      // Authoritative; NXDOMAIN (rcode 3) for a name with no record at all, an empty answer for a name with other types.
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (answers.length === 0 && !known ? 3 : 0),
      questions: [question],
      answers,
    });
    this.socket.send(reply, peer.port, peer.address);
  }
}
