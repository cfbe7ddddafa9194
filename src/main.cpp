// placeholder replaced by the CLI below
int main() { return 0; }
