<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Phase\Sdk\Client;
use Phase\Sdk\Exception\JobException;
use Phase\Sdk\Exception\NodeException;
use Phase\Sdk\Exception\TransportException;
use Phase\Sdk\Exception\VerificationException;
use Phase\Sdk\Job;
use Phase\Sdk\Transport\HttpTransport;
use PHPUnit\Framework\TestCase;

/** Against real `phase node` processes, over both HTTP implementations where available. */
final class NodeTest extends TestCase
{
    private static ?NodeProcess $node = null;
    private static ?NodeProcess $node2 = null;

    public static function setUpBeforeClass(): void
    {
        self::$node = new NodeProcess();
        self::$node2 = new NodeProcess();
    }

    public static function tearDownAfterClass(): void
    {
        self::$node?->stop();
        self::$node2?->stop();
    }

    public static function transports(): array
    {
        return Transports::all();
    }

    private function client(string $transport, array $urls = [], array $options = []): Client
    {
        return new Client(Transports::make($transport, $urls ?: [self::$node->url]), $options + ['backoff_ms' => 1]);
    }

    /** @dataProvider transports */
    public function testHelloRunsAndItsReceiptVerifiesAgainstThePinnedKey(string $transport): void
    {
        $client = $this->client($transport, [], ['trusted_keys' => [self::$node->nodeKey]]);
        $result = $client->run(Job::fromFile(guest('hello'))->withInput('Hello, World'));
        self::assertSame('dlroW ,olleH', $result->stdout());
        self::assertSame(0, $result->exitCode());
        self::assertTrue($result->isSuccess());
        self::assertSame(self::$node->nodeKey, $result->receipt()->nodeKey);
        self::assertSame(hash('sha256', file_get_contents(guest('hello'))), $result->receipt()->moduleSha256);
        self::assertGreaterThan(0, $result->fuelUsed());
    }

    /** @dataProvider transports */
    public function testAScriptAndItsDataFilesGoInAndVerifiedFilesComeBack(string $transport): void
    {
        $dir = sys_get_temp_dir() . '/phase-php-files-' . getmypid() . '-' . $transport;
        @mkdir("{$dir}/in", 0777, true);
        file_put_contents("{$dir}/in/data.txt", "alpha\nbravo\ncharlie\n");
        file_put_contents("{$dir}/in/old.txt", 'old');
        @symlink('data.txt', "{$dir}/in/link");
        $job = Job::fromFile(guest('files'))->withArgs(['/work'])
            ->withDirectory($dir, '/work')
            ->withFile('/work', 'in/delete-me.txt', 'gone');
        $result = $this->client($transport, [], ['trusted_keys' => [self::$node->nodeKey]])->run($job);
        self::assertSame(0, $result->exitCode(), $result->stdout() . $result->stderr());
        self::assertStringStartsWith("lines: 3\n", $result->stdout());
        self::assertSame("ALPHA\nBRAVO\nCHARLIE\n", $result->file('/work', 'out/result.txt'));
        self::assertSame('old', $result->file('/work', 'out/moved.txt'));
        $removed = array_values(array_filter($result->files(), static fn ($f) => $f['kind'] === 'removed'));
        self::assertSame(['in/delete-me.txt', 'in/old.txt'], array_map(static fn ($f) => $f['path'], $removed));
        self::assertNotNull($result->receipt()->leftSha256);
        array_map('unlink', ["{$dir}/in/data.txt", "{$dir}/in/old.txt", "{$dir}/in/link"]);
        rmdir("{$dir}/in");
        rmdir($dir);
    }

    /** @dataProvider transports */
    public function testAFileUploadedOnceIsNamedByHashInJobs(string $transport): void
    {
        $client = $this->client($transport, [self::$node->url, self::$node2->url], ['trusted_keys' => [self::$node->nodeKey, self::$node2->nodeKey]]);
        $data = "alpha\nbravo\ncharlie\n" . $transport;
        $sha = $client->putBlob($data);
        self::assertSame(hash('sha256', $data), $sha);
        self::assertSame($sha, $client->putBlob($data), 'held already');
        $job = Job::fromFile(guest('files'))->withArgs(['/work'])
            ->withStoredFile('/work', 'in/data.txt', $sha, strlen($data))
            ->withFile('/work', 'in/old.txt', 'old');
        $result = $client->run($job);
        self::assertStringStartsWith("lines: 4\n", $result->stdout());
        self::assertSame(strtoupper($data), $result->file('/work', 'out/result.txt'));
        // A file no node holds is the node's error, named.
        try {
            $client->run(Job::fromFile(guest('files'))->withArgs(['/work'])->withStoredFile('/work', 'in/data.txt', str_repeat('ab', 32), 3));
            self::fail('no exception');
        } catch (NodeException $e) {
            self::assertSame('file_not_found', $e->errorCode);
        }
    }

    /** @dataProvider transports */
    public function testAnotherNodesKeyIsNotTrusted(string $transport): void
    {
        $client = $this->client($transport, [], ['trusted_keys' => [self::$node2->nodeKey]]);
        $this->expectException(VerificationException::class);
        $this->expectExceptionMessage('not a trusted key');
        $client->run(Job::fromFile(guest('hello'))->withInput('x'));
    }

    /** @dataProvider transports */
    public function testATrapIsAJobExceptionCarryingTheVerifiedResult(string $transport): void
    {
        try {
            $this->client($transport)->run(Job::fromFile(guest('hostile-loop'))->withLimits(fuel: 2_000_000));
            self::fail('no exception');
        } catch (JobException $e) {
            self::assertSame('out_of_fuel', $e->result->trap());
            self::assertNull($e->result->exitCode());
            self::assertSame('out_of_fuel', $e->result->receipt()->trap);
            self::assertSame(2_000_000, $e->result->receipt()->limits['fuel']);
            self::assertStringContainsString('trapped: out_of_fuel', $e->getMessage());
        }
    }

    /** @dataProvider transports */
    public function testArgsEnvAndLimitsAreBoundByTheReceipt(string $transport): void
    {
        $job = Job::fromFile(guest('sha256sum'))->withInput('abc')->withArgs(['--x'])
            ->withEnv(['MODE' => 'test'])->withLimits(fuel: 50_000_000, memoryBytes: 16 << 20, outputBytes: 4096, deadlineMs: 5000);
        $result = $this->client($transport)->run($job);
        self::assertStringStartsWith(hash('sha256', 'abc'), $result->stdout());
        self::assertSame(
            ['fuel' => 50_000_000, 'memory_bytes' => 16 << 20, 'output_bytes' => 4096, 'deadline_ms' => 5000],
            $result->receipt()->limits
        );
    }

    /** @dataProvider transports */
    public function testAnIdempotencyKeyReturnsTheFirstResult(string $transport): void
    {
        $client = $this->client($transport);
        $job = Job::fromFile(guest('hello'))->withInput('once')->withIdempotencyKey('order-' . bin2hex(random_bytes(4)));
        $before = self::$node->metric('phase_jobs_total{outcome="exited"}');
        $a = $client->run($job);
        $b = $client->run($job);
        self::assertFalse($a->replayed());
        self::assertTrue($b->replayed());
        self::assertSame($a->receipt()->signature, $b->receipt()->signature);
        self::assertSame($before + 1, self::$node->metric('phase_jobs_total{outcome="exited"}'));
    }

    /** @dataProvider transports */
    public function testAnInvalidModuleIsANodeErrorAndIsNotRetried(string $transport): void
    {
        $sleeps = 0;
        $client = $this->client($transport, [], ['sleep' => function () use (&$sleeps) {
            $sleeps++;
        }]);
        try {
            $client->run(Job::fromBytes("\0asm\x01\0\0\0\x05"));
            self::fail('no exception');
        } catch (NodeException $e) {
            self::assertSame(422, $e->status);
            self::assertSame('invalid_module', $e->errorCode);
            self::assertFalse($e->isRetryable());
        }
        self::assertSame(0, $sleeps, 'a request error is not retried');
    }

    /** @dataProvider transports */
    public function testFailoverToTheNextNodeWhenOneIsDown(string $transport): void
    {
        $sleeps = 0;
        $dead = 'http://127.0.0.1:' . self::freePort();
        $client = $this->client($transport, [$dead, self::$node->url], ['sleep' => function () use (&$sleeps) {
            $sleeps++;
        }]);
        $result = $client->run(Job::fromFile(guest('hello'))->withInput('ab'));
        self::assertSame('ba', $result->stdout());
        self::assertSame(1, $sleeps, 'one backoff before the second node');
    }

    /** @dataProvider transports */
    public function testAllNodesDownIsATransportErrorAfterTheRetries(string $transport): void
    {
        $sleeps = 0;
        $client = $this->client($transport, ['http://127.0.0.1:' . self::freePort()], ['retries' => 2, 'sleep' => function () use (&$sleeps) {
            $sleeps++;
        }]);
        try {
            $client->run(Job::fromFile(guest('hello')));
            self::fail('no exception');
        } catch (TransportException $e) {
            self::assertStringContainsString('POST http://127.0.0.1:', $e->getMessage());
        }
        self::assertSame(2, $sleeps);
    }

    /** @dataProvider transports */
    public function testRedundancyRunsOnDistinctNodesThatAgree(string $transport): void
    {
        $client = $this->client($transport, [self::$node->url, self::$node2->url]);
        $result = $client->run(Job::fromFile(guest('cpu-bench'))->withInput('100000')->withRedundancy(2));
        self::assertCount(2, $result->receipts());
        self::assertEqualsCanonicalizing([self::$node->nodeKey, self::$node2->nodeKey], $result->nodeKeys());
        self::assertSame($result->receipts()[0]->fuelUsed, $result->receipts()[1]->fuelUsed);
        $this->expectException(\InvalidArgumentException::class);
        $client->run(Job::fromFile(guest('hello'))->withRedundancy(3));
    }

    /** @dataProvider transports */
    public function testAModuleUploadedOnceRunsByHash(string $transport): void
    {
        $wasm = file_get_contents(guest('hello'));
        $ctx = stream_context_create(['http' => [
            'method' => 'PUT', 'header' => "Content-Type: application/wasm\r\n", 'content' => $wasm, 'ignore_errors' => true,
        ]]);
        $answer = json_decode(file_get_contents(self::$node->url . '/v1/modules', false, $ctx), true);
        $result = $this->client($transport)->run(Job::fromHash($answer['module_sha256'])->withInput('xyz'));
        self::assertSame('zyx', $result->stdout());
    }

    private static function freePort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $port = (int) substr(strrchr(stream_socket_get_name($s, false), ':'), 1);
        fclose($s);
        return $port;
    }
}
