<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Phase\Sdk\Client;
use Phase\Sdk\Job;
use PHPUnit\Framework\TestCase;

/** A two-node p2p cluster: the client talks to A; placement sends the job to B. */
final class ClusterTest extends TestCase
{
    public function testAJobPlacedOnAPeerIsVerifiedAgainstThePeersKey(): void
    {
        $a = new NodeProcess(['--p2p', '/ip4/127.0.0.1/tcp/0']);
        $status = json_decode(file_get_contents("{$a->url}/v1/status"), true);
        $b = new NodeProcess(['--p2p', '/ip4/127.0.0.1/tcp/0', '--bootstrap', $status['p2p']['listen'][0]]);
        $deadline = microtime(true) + 10;
        do {
            $peers = json_decode(file_get_contents("{$a->url}/v1/peers"), true)['peers'];
            $connected = array_filter($peers, static fn ($p) => $p['connected'] && str_starts_with($p['agent'], 'phase/'));
            usleep(100000);
        } while ($connected === [] && microtime(true) < $deadline);
        self::assertNotEmpty($connected, 'the nodes did not connect');

        // Pinning B's key: the receipt must come from the executor, not from A.
        $client = new Client([$a->url], ['trusted_keys' => [$b->nodeKey]]);
        $result = $client->run(Job::fromFile(guest('hello'))->withInput('Hello, World')->withPlacement('remote'));
        self::assertSame('dlroW ,olleH', $result->stdout());
        self::assertSame($b->nodeKey, $result->receipt()->nodeKey);
        $a->stop();
        $b->stop();
    }
}
