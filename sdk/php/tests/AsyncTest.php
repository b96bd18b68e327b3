<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Phase\Sdk\Client;
use Phase\Sdk\Exception\NodeException;
use Phase\Sdk\Exception\TimeoutException;
use Phase\Sdk\Exception\VerificationException;
use Phase\Sdk\Job;
use PHPUnit\Framework\TestCase;

/** Asynchronous jobs (docs/sdk-php.md, "Jobs that outlive a request") against a real node. */
final class AsyncTest extends TestCase
{
    private static ?NodeProcess $node = null;

    public static function setUpBeforeClass(): void
    {
        self::$node = new NodeProcess(['--max-concurrent', '1']);
    }

    public static function tearDownAfterClass(): void
    {
        self::$node?->stop();
    }

    private function client(array $options = []): Client
    {
        return new Client([self::$node->url], $options + ['trusted_keys' => [self::$node->nodeKey]]);
    }

    public static function transports(): array
    {
        return Transports::all();
    }

    /** @dataProvider transports */
    public function testSubmitReturnsAtOnceAndTheResultVerifies(string $transport): void
    {
        $client = new Client(Transports::make($transport, [self::$node->url]), ['trusted_keys' => [self::$node->nodeKey]]);
        $handle = $client->submit(Job::fromFile(guest('hello'))->withInput('later'));
        self::assertMatchesRegularExpression('/^[0-9a-f]{64}$/', $handle->id);
        $result = $handle->wait(30);
        self::assertSame('retal', $result->stdout());
        self::assertSame($handle->id, $result->jobId());
        self::assertSame(self::$node->nodeKey, $result->receipt()->nodeKey);
    }

    public function testAHandleRebuiltFromItsTokenVerifiesTheSameResult(): void
    {
        $job = Job::fromFile(guest('hello'))->withInput('kept in a database')->withArgs(['a'])->withLimits(fuel: 50_000_000);
        $token = $this->client()->submit($job)->token();
        // A later request: a new client, only the token.
        $handle = $this->client()->resume($token);
        self::assertSame('esabatad a ni tpek', $handle->wait(30)->stdout());
        // A token whose asked-for input differs is caught by the receipt check.
        $t = json_decode($token, true);
        $t['input_sha256'] = hash('sha256', 'something else');
        $this->expectException(VerificationException::class);
        $this->client()->resume(json_encode($t))->wait(30);
    }

    public function testAJobWithFilesIsVerifiedFromItsTokenWithoutTheirBytes(): void
    {
        $job = Job::fromFile(guest('files'))->withArgs(['/work'])
            ->withFile('/work', 'in/data.txt', str_repeat("line\n", 1000))
            ->withFile('/work', 'in/old.txt', 'old')
            ->withFile('/work', 'in/delete-me.txt', 'gone');
        $token = $this->client()->submit($job)->token();
        self::assertStringNotContainsString(base64_encode('old'), $token);
        self::assertLessThan(4000, strlen($token));
        $result = $this->client()->resume($token)->wait(30);
        self::assertStringStartsWith("lines: 1000\n", $result->stdout());
        self::assertSame(strtoupper(str_repeat("line\n", 1000)), $result->file('/work', 'out/result.txt'));
    }

    public function testWhereAJobWasAskedToRunIsPartOfItsHandle(): void
    {
        $job = Job::fromFile(guest('hello'))->withInput('placed here');
        $here = $this->client()->submit($job->withPlacement('local'));
        $anywhere = $this->client()->submit($job);
        self::assertSame($here->id, $anywhere->id, 'one job id: the receipt names the job');
        self::assertSame("/v1/jobs/{$here->id}.local", $here->location);
        self::assertSame("/v1/jobs/{$here->id}", $anywhere->location);
        // The handle's token keeps where the node answers for it.
        $resumed = $this->client()->resume($here->token());
        self::assertSame($here->location, $resumed->location);
        self::assertSame('ereh decalp', $resumed->wait(30)->stdout());
        self::assertSame('ereh decalp', $anywhere->wait(30)->stdout());
        // A location that is not this job's is never followed.
        $t = json_decode($here->token(), true);
        foreach (["/v1/jobs/{$here->id}/../../metrics", '/v1/jobs/' . str_repeat('0', 64), "/v1/jobs/{$here->id}.a/b"] as $bad) {
            $t['location'] = $bad;
            try {
                $this->client()->resume(json_encode($t));
                self::fail("followed {$bad}");
            } catch (\InvalidArgumentException) {
            }
        }
    }

    public function testAMalformedTokenIsRefused(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        $this->client()->resume('{"node":"http://127.0.0.1:1","job_id":"zz"}');
    }

    public function testARunningJobShowsItsOutputAndCanBeCancelled(): void
    {
        $client = $this->client();
        $ticker = $client->submit(Job::fromFile(guest('ticker'))->withInput('400 3000000')->withLimits(fuel: 1_000_000_000_000, deadlineMs: 120_000));
        $waiting = $client->submit(Job::fromFile(guest('hello'))->withInput('queued behind'));
        $deadline = microtime(true) + 30;
        $out = '';
        while (!str_contains($out, "tick 2\n") && microtime(true) < $deadline) {
            $out .= $ticker->output('stdout', strlen($out));
            usleep(20000);
        }
        self::assertStringStartsWith("tick 1\ntick 2\n", $out);
        self::assertSame('running', $ticker->status()['status']);
        self::assertSame('queued', $waiting->status()['status'], 'one slot: the second waits');
        try {
            $waiting->wait(0.3);
            self::fail('a wait shorter than the job ends in a timeout');
        } catch (TimeoutException) {
        }
        // A handle without a cancel token cannot cancel.
        $t = json_decode($ticker->token(), true);
        $t['cancel_token'] = null;
        try {
            $client->resume(json_encode($t))->cancel();
            self::fail('cancelled without the token');
        } catch (NodeException $e) {
            self::assertSame('forbidden', $e->errorCode);
        }
        // An identical submission (anyone can compute a job's id) holds a token of its own:
        // its cancel releases only its own hold, and the job runs on for the first submitter.
        $twin = $client->submit(Job::fromFile(guest('ticker'))->withInput('400 3000000')->withLimits(fuel: 1_000_000_000_000, deadlineMs: 120_000));
        self::assertSame($ticker->id, $twin->id);
        self::assertSame('running', $twin->cancel());
        self::assertSame('running', $ticker->status()['status']);
        // The first submitter's handle, resumed from its token, stops it.
        self::assertSame('cancelling', $client->resume($ticker->token())->cancel());
        try {
            $ticker->wait(30);
            self::fail('a cancelled job has no result');
        } catch (NodeException $e) {
            self::assertSame('cancelled', $e->errorCode);
        }
        self::assertSame('dniheb deueuq', $waiting->wait(30)->stdout(), 'the queued job runs once the slot is free');
    }

    public function testAsynchronousJobsNeedHttp(): void
    {
        $this->expectException(\LogicException::class);
        Client::local(phase_bin())->submit(Job::fromFile(guest('hello')));
    }
}
