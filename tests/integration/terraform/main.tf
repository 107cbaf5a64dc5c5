# The network stack of issue 11, as a Terraform user writes it: a VPC with DNS
# hostnames, an internet gateway, a public subnet, a route table with a default route
# and its association, a security group with an SSH ingress rule, a key pair,
# kiln-tiny and an Elastic IP; and issue 12's: an EBS volume attached to it, and a
# launch template with a second instance launched from it. Applied and destroyed by
# test_terraform.py.

terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "5.100.0" }
  }
}

variable "endpoint" { type = string }
variable "credentials" { type = string }
variable "name" { type = string }
variable "public_key" { type = string }
variable "cidr_prefix" { type = string }

provider "aws" {
  region                      = "us-east-1"
  shared_credentials_files    = [var.credentials]
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  endpoints {
    ec2 = var.endpoint
    sts = var.endpoint
  }
}

data "aws_ami" "tiny" {
  owners      = ["amazon"]
  most_recent = true
  filter {
    name   = "name"
    values = ["kiln-tiny-x86_64*"]
  }
}

resource "aws_vpc" "main" {
  cidr_block           = "${var.cidr_prefix}.0.0/16"
  enable_dns_hostnames = true
  tags                 = { Name = var.name }
}

resource "aws_internet_gateway" "gw" {
  vpc_id = aws_vpc.main.id
}

resource "aws_subnet" "public" {
  vpc_id                  = aws_vpc.main.id
  cidr_block              = "${var.cidr_prefix}.1.0/24"
  map_public_ip_on_launch = true
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.gw.id
  }
}

resource "aws_route_table_association" "public" {
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

resource "aws_security_group" "ssh" {
  name   = var.name
  vpc_id = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  security_group_id = aws_security_group.ssh.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
}

resource "aws_key_pair" "key" {
  key_name   = var.name
  public_key = var.public_key
}

resource "aws_placement_group" "web" {
  name            = var.name
  strategy        = "partition"
  partition_count = 2
  tags            = { Name = var.name }
}

resource "aws_instance" "web" {
  ami                        = data.aws_ami.tiny.id
  instance_type              = "t3.micro"
  placement_group            = aws_placement_group.web.name
  placement_partition_number = 2
  subnet_id                  = aws_subnet.public.id
  vpc_security_group_ids = [aws_security_group.ssh.id]
  key_name               = aws_key_pair.key.key_name
  tags                   = { Name = var.name }
  depends_on             = [aws_route_table_association.public]
}

resource "aws_eip" "ip" {
  domain   = "vpc"
  instance = aws_instance.web.id
  depends_on = [aws_internet_gateway.gw]
}

resource "aws_ebs_volume" "data" {
  availability_zone = aws_instance.web.availability_zone
  size              = 1
  type              = "gp3"
  tags              = { Name = var.name }
}

resource "aws_volume_attachment" "data" {
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data.id
  instance_id = aws_instance.web.id
}

resource "aws_launch_template" "web" {
  name                   = var.name
  image_id               = data.aws_ami.tiny.id
  instance_type          = "t3.micro"
  key_name               = aws_key_pair.key.key_name
  vpc_security_group_ids = [aws_security_group.ssh.id]
  metadata_options {
    http_tokens = "required"
  }
  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-templated" }
  }
}

resource "aws_instance" "templated" {
  subnet_id = aws_subnet.public.id
  # As on EC2, the template's tags land on the instance, so the instance names them
  # too (or every plan would offer to remove them).
  tags = { Name = "${var.name}-templated" }
  launch_template {
    id      = aws_launch_template.web.id
    version = "$Latest"
  }
  depends_on = [aws_route_table_association.public]
}

output "public_ip" { value = aws_eip.ip.public_ip }
output "templated_id" { value = aws_instance.templated.id }
output "template_id" { value = aws_launch_template.web.id }
output "volume_id" { value = aws_ebs_volume.data.id }
output "instance_id" { value = aws_instance.web.id }
output "placement_group_id" { value = aws_placement_group.web.placement_group_id }
