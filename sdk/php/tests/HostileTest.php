<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Phase\Sdk\Client;
use Phase\Sdk\Exception\NodeException;
use Phase\Sdk\Exception\ProtocolException;
use Phase\Sdk\Exception\VerificationException;
use Phase\Sdk\Job;
use PHPUnit\Framework\TestCase;

/** Answers a faulty or dishonest node could send: none is silently accepted. */
final class HostileTest extends TestCase
{
    private static ?NodeProcess $node = null;

    public static function setUpBeforeClass(): void
    {
        self::$node = new NodeProcess();
    }

    public static function tearDownAfterClass(): void
    {
        self::$node?->stop();
    }

    private function runThrough(string $transport, string $mode, array $options = []): void
    {
        $server = new HostileServer($mode, self::$node->url);
        $client = new Client(Transports::make($transport, [$server->url]), $options + ['backoff_ms' => 1]);
        $client->run(Job::fromFile(guest('hello'))->withInput('Hello, World'));
    }

    public static function forgeries(): array
    {
        return [
            'tampered stdout' => ['tamper-stdout', [], 'the stdout received'],
            'truncated stdout' => ['truncate-stdout', [], 'the stdout received'],
            'tampered receipt' => ['tamper-receipt', [], 'signature does not verify'],
            'receipt for another input, validly signed' => ['other-job-resigned', [], 'the input sent'],
        ];
    }

    /** Every forgery over every transport. */
    public static function forgeriesByTransport(): array
    {
        $out = [];
        foreach (self::forgeries() as $name => $case) {
            foreach (Transports::all() as $t => [$transport]) {
                $out["{$name} over {$t}"] = [$transport, ...$case];
            }
        }
        return $out;
    }

    public static function transports(): array
    {
        return Transports::all();
    }

    /** @dataProvider forgeriesByTransport */
    public function testForgedAnswersFailVerification(string $transport, string $mode, array $options, string $reason): void
    {
        $this->expectException(VerificationException::class);
        $this->expectExceptionMessage($reason);
        $this->runThrough($transport, $mode, $options);
    }

    /** @dataProvider transports */
    public function testAConsistentForgeryByAnUntrustedKeyFailsWithPinning(string $transport): void
    {
        // Without pinning this forgery is self-consistent; pinning the real node's key stops it.
        $this->expectException(VerificationException::class);
        $this->expectExceptionMessage('not a trusted key');
        $this->runThrough($transport, 'other-output-resigned', ['trusted_keys' => [self::$node->nodeKey]]);
    }

    /** @dataProvider transports */
    public function testAResignedReceiptFailsWithPinning(string $transport): void
    {
        $this->expectException(VerificationException::class);
        $this->runThrough($transport, 'resign', ['trusted_keys' => [self::$node->nodeKey]]);
    }

    /** @dataProvider transports */
    public function testInvalidJsonIsAProtocolError(string $transport): void
    {
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('not JSON');
        $this->runThrough($transport, 'invalid-json', ['retries' => 0]);
    }

    /** @dataProvider transports */
    public function testAHugeAnswerIsCutOffAsAProtocolError(string $transport): void
    {
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('larger than');
        $this->runThrough($transport, 'huge', ['retries' => 0]);
    }

    /** @dataProvider transports */
    public function testServerErrorsAreRetriedThenReported(string $transport): void
    {
        $server = new HostileServer('status-500', self::$node->url);
        $client = new Client(Transports::make($transport, [$server->url]), ['retries' => 2, 'backoff_ms' => 1]);
        try {
            $client->run(Job::fromFile(guest('hello')));
            self::fail('no exception');
        } catch (NodeException $e) {
            self::assertSame(500, $e->status);
            self::assertStringContainsString('upstream exploded', $e->getMessage());
        }
        self::assertSame(3, $server->hits(), 'one try and two retries');
    }

    /** @dataProvider transports */
    public function testAFlakyNodeSucceedsOnRetryAndTheJobRunsOnce(string $transport): void
    {
        $server = new HostileServer('flaky', self::$node->url);
        $before = self::$node->metric('phase_jobs_total{outcome="exited"}');
        $client = new Client(Transports::make($transport, [$server->url]), ['backoff_ms' => 1]);
        $result = $client->run(Job::fromFile(guest('hello'))->withInput('ab'));
        self::assertSame('ba', $result->stdout());
        self::assertSame(2, $server->hits());
        self::assertSame($before + 1, self::$node->metric('phase_jobs_total{outcome="exited"}'));
    }
}
