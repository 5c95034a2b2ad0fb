// A real HDFS for tests: Hadoop's own MiniDFSCluster (one NameNode, one DataNode) on 127.0.0.1.
//
// Started by tests/support/hdfs.py with Java's single-file source launcher, so there is no build step:
//
//     java -cp <hadoop-client-minicluster.jar>:<pyspark/jars: hadoop-client-api, hadoop-client-runtime, ...> \
//         HdfsMiniCluster.java <base-dir> <namenode-port> <namenode-http-port> <owner>
//
// <base-dir> holds the NameNode's and DataNode's storage; <owner> becomes the owner of "/" (mode 755),
// so that user can write anywhere while permission checks stay on. The NameNode's superuser is whoever
// runs this JVM as far as Hadoop is concerned (HADOOP_USER_NAME, else the OS user); hdfs.py sets
// HADOOP_USER_NAME=hdfs so the test's own user is not a superuser and permissions apply to it.
//
// Once the cluster is up, one line goes to stdout:
//
//     HDFS_READY hdfs://127.0.0.1:<namenode-port> http://127.0.0.1:<namenode-http-port>
//
// Then it blocks until stdin reaches end of file (the parent closed it, or died), shuts the cluster
// down and exits; SIGTERM/SIGKILL end it too.

import java.io.File;
import java.io.InputStream;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

public class HdfsMiniCluster {
    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: HdfsMiniCluster <base-dir> <namenode-port> <namenode-http-port> <owner>");
            System.exit(2);
        }
        File baseDir = new File(args[0]);
        int port = Integer.parseInt(args[1]);
        int httpPort = Integer.parseInt(args[2]);
        String owner = args[3];

        Configuration conf = new HdfsConfiguration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, baseDir.getAbsolutePath());
        conf.setBoolean("dfs.permissions.enabled", true);
        conf.setBoolean("dfs.webhdfs.enabled", true);
        conf.setInt("dfs.replication", 1);
        conf.setInt("dfs.namenode.safemode.extension", 0);
        // The DataNode registers as 127.0.0.1 (MiniDFSCluster's default too), and clients reach it there.
        conf.set("dfs.datanode.hostname", "127.0.0.1");
        conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
        conf.set("dfs.namenode.http-bind-host", "127.0.0.1");

        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf, baseDir)
                .nameNodePort(port)
                .nameNodeHttpPort(httpPort)
                .numDataNodes(1)
                .build();
        cluster.waitActive();

        FileSystem fs = cluster.getFileSystem();
        Path root = new Path("/");
        fs.setOwner(root, owner, null);
        fs.setPermission(root, new FsPermission((short) 0755));

        int rpc = cluster.getNameNodePort();
        int http = cluster.getNameNode().getHttpAddress().getPort();
        System.out.println("HDFS_READY hdfs://127.0.0.1:" + rpc + " http://127.0.0.1:" + http);
        System.out.flush();

        InputStream in = System.in;
        byte[] buffer = new byte[256];
        while (in.read(buffer) >= 0) {
            // Anything written to stdin is ignored; only its end matters.
        }
        System.out.println("HDFS_STOPPING (stdin closed)");
        System.out.flush();
        cluster.shutdown();
        System.exit(0);
    }
}
