"""What the story tests share: the AWS CLI's answers, ssh to an instance's public
address, and plain HTTP from the host."""

import socket
import subprocess

from instances_helpers import wait_for

BOOT = 240


def ok(aws, *args, output="json", timeout=60):
    rc, data, err = aws(*args, output=output, timeout=timeout)
    assert rc == 0, f"aws {' '.join(args)} failed: {err}"
    return data


def ssh(ip, key, command, user="ec2-user", timeout=30):
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            f"{user}@{ip}",
            command,
        ],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
    )


def wait_ssh(ip, key, kiln, timeout=BOOT, user="ec2-user"):
    def up():
        try:
            return ssh(ip, key, "echo up", user=user, timeout=20).stdout.strip() == "up"
        except subprocess.TimeoutExpired:
            return False

    wait_for(f"ssh to {ip}", up, timeout, interval=2, diag=kiln.log_tail)


def fetch(ip, port=80, timeout=3):
    """The body of GET / on ip:port, or None if it cannot be had."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.decode("utf-8", "replace")
    except OSError:
        return None


def tcp_open(ip, port, timeout=3):
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def page_with(ip, token):
    """The page at ip if it carries token, else None."""
    body = fetch(ip)
    return body if body and token in body else None


def instance(aws, instance_id):
    data = ok(aws, "ec2", "describe-instances", "--instance-ids", instance_id)
    return data["Reservations"][0]["Instances"][0]


def console(aws, instance_id):
    data = ok(aws, "ec2", "get-console-output", "--instance-id", instance_id, output="text")
    return data or ""


def launch(aws, image, key, group, user_data=None, extra=(), instance_type="t3.micro"):
    args = ["ec2", "run-instances", "--image-id", image, "--instance-type", instance_type, "--key-name", key]
    args += ["--security-group-ids", group, *extra]
    if user_data:
        args += ["--user-data", f"file://{user_data}"]
    return ok(aws, *args)["Instances"][0]["InstanceId"]
