<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Phase\Sdk\Client;
use Phase\Sdk\Exception\NodeException;
use Phase\Sdk\Exception\ProtocolException;
use Phase\Sdk\Exception\VerificationException;
use Phase\Sdk\Job;
use Phase\Sdk\Transport\HttpTransport;
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

    private function runThrough(string $mode, array $options = []): void
    {
        $server = new HostileServer($mode, self::$node->url);
        $client = new Client(new HttpTransport([$server->url], 1 << 20, false), $options + ['backoff_ms' => 1]);
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

    /** @dataProvider forgeries */
    public function testForgedAnswersFailVerification(string $mode, array $options, string $reason): void
    {
        $this->expectException(VerificationException::class);
        $this->expectExceptionMessage($reason);
        $this->runThrough($mode, $options);
    }

    public function testAConsistentForgeryByAnUntrustedKeyFailsWithPinning(): void
    {
        // Without pinning this forgery is self-consistent; pinning the real node's key stops it.
        $this->expectException(VerificationException::class);
        $this->expectExceptionMessage('not a trusted key');
        $this->runThrough('other-output-resigned', ['trusted_keys' => [self::$node->nodeKey]]);
    }

    public function testAResignedReceiptFailsWithPinning(): void
    {
        $this->expectException(VerificationException::class);
        $this->runThrough('resign', ['trusted_keys' => [self::$node->nodeKey]]);
    }

    public function testInvalidJsonIsAProtocolError(): void
    {
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('not JSON');
        $this->runThrough('invalid-json', ['retries' => 0]);
    }

    public function testAHugeAnswerIsCutOffAsAProtocolError(): void
    {
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('larger than');
        $this->runThrough('huge', ['retries' => 0]);
    }

    public function testServerErrorsAreRetriedThenReported(): void
    {
        $server = new HostileServer('status-500', self::$node->url);
        $client = new Client(new HttpTransport([$server->url], 1 << 20, false), ['retries' => 2, 'backoff_ms' => 1]);
        try {
            $client->run(Job::fromFile(guest('hello')));
            self::fail('no exception');
        } catch (NodeException $e) {
            self::assertSame(500, $e->status);
            self::assertStringContainsString('upstream exploded', $e->getMessage());
        }
        self::assertSame(3, $server->hits(), 'one try and two retries');
    }

    public function testAFlakyNodeSucceedsOnRetryAndTheJobRunsOnce(): void
    {
        $server = new HostileServer('flaky', self::$node->url);
        $before = self::$node->metric('phase_jobs_total{outcome="exited"}');
        $client = new Client(new HttpTransport([$server->url], 1 << 20, false), ['backoff_ms' => 1]);
        $result = $client->run(Job::fromFile(guest('hello'))->withInput('ab'));
        self::assertSame('ba', $result->stdout());
        self::assertSame(2, $server->hits());
        self::assertSame($before + 1, self::$node->metric('phase_jobs_total{outcome="exited"}'));
    }
}
